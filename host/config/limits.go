package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// MaxFileBytes is the largest configuration file limitd reads. Real files are a few
// kilobytes; the bound keeps a wrong path (a log, /dev/zero) from exhausting memory.
const MaxFileBytes = 1 << 20

// MaxNesting bounds how deeply blocks, brackets, templates and chained operators nest in
// the file. HCL's parser and evaluator recurse once per level, and a deep enough file
// would overflow the stack, which kills the process rather than failing the parse.
const MaxNesting = 100

// checkSource refuses, before HCL sees it, a file the parser or the evaluator cannot
// handle safely: one too large, not UTF-8 (HCL lets bad bytes through in comments), nested
// too deeply, or with a for expression, whose result can grow with the square of the
// file's size (three nested ones over a 2,000-element list in a 12 KB file run for ever).
// The file is not parsed when it returns errors.
func checkSource(filename string, src []byte, isJSON bool) hcl.Diagnostics {
	start := hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos}
	if len(src) > MaxFileBytes {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Configuration file too large",
			Detail: fmt.Sprintf("The file has more than %d bytes (%d KiB); a limitd configuration is a few kilobytes. Check that -config names the right file.",
				MaxFileBytes, MaxFileBytes>>10),
			Subject: start.Ptr(),
		}}
	}
	if !utf8.Valid(src) {
		i := 0
		for i < len(src) {
			r, n := utf8.DecodeRune(src[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		pos := posAt(src, i)
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid character encoding",
			Detail: fmt.Sprintf("Byte 0x%02x at line %d, column %d is not UTF-8 (comments included). Save the file as UTF-8.",
				src[i], pos.Line, pos.Column),
			Subject: &hcl.Range{Filename: filename, Start: pos, End: hcl.Pos{Line: pos.Line, Column: pos.Column + 1, Byte: pos.Byte + 1}},
		}}
	}
	if isJSON {
		return checkJSONNesting(filename, src)
	}
	// Lexing does not recurse; the lexer's own complaints are left to the parser.
	tokens, _ := hclsyntax.LexConfig(src, filename, hcl.InitialPos)
	return checkNesting(tokens, 0)
}

// posAt returns the position of src[off].
func posAt(src []byte, off int) hcl.Pos {
	line := 1 + bytes.Count(src[:off], []byte("\n"))
	col := 1 + utf8.RuneCount(src[bytes.LastIndexByte(src[:off], '\n')+1:off])
	return hcl.Pos{Line: line, Column: col, Byte: off}
}

// checkNesting measures the depth of a token stream, starting at base: one level per open
// bracket, quote, heredoc and template sequence, and one per operator chained within an
// expression (HCL parses a binary or unary operator's operand recursively). It also
// refuses for expressions.
func checkNesting(tokens hclsyntax.Tokens, base int) hcl.Diagnostics {
	type level struct {
		typ hclsyntax.TokenType
		ops int // operators since the last separator at this level
	}
	stack := []level{{typ: hclsyntax.TokenOBrace}}
	depth := base // levels plus the operators of every level
	for i, tok := range tokens {
		top := &stack[len(stack)-1]
		switch tok.Type {
		case hclsyntax.TokenOBrace, hclsyntax.TokenOBrack, hclsyntax.TokenOParen,
			hclsyntax.TokenOQuote, hclsyntax.TokenOHeredoc,
			hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
			if tok.Type == hclsyntax.TokenOBrace || tok.Type == hclsyntax.TokenOBrack || tok.Type == hclsyntax.TokenTemplateControl {
				if isFor(tokens, i+1) {
					return hcl.Diagnostics{{
						Severity: hcl.DiagError,
						Summary:  "for expressions are not supported",
						Detail:   "A limitd configuration cannot use for expressions or %{for} directives: write the values out.",
						Subject:  tok.Range.Ptr(),
					}}
				}
			}
			stack = append(stack, level{typ: tok.Type})
			depth++
		case hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen,
			hclsyntax.TokenCQuote, hclsyntax.TokenCHeredoc, hclsyntax.TokenTemplateSeqEnd:
			if len(stack) > 1 {
				depth -= 1 + top.ops
				stack = stack[:len(stack)-1]
			}
		case hclsyntax.TokenComma:
			depth -= top.ops
			top.ops = 0
		case hclsyntax.TokenNewline:
			// Newlines end an item only in a body or an object; inside brackets,
			// parentheses and templates the parser skips them.
			if top.typ == hclsyntax.TokenOBrace {
				depth -= top.ops
				top.ops = 0
			}
		case hclsyntax.TokenPlus, hclsyntax.TokenMinus, hclsyntax.TokenStar, hclsyntax.TokenSlash,
			hclsyntax.TokenPercent, hclsyntax.TokenEqualOp, hclsyntax.TokenNotEqual,
			hclsyntax.TokenLessThan, hclsyntax.TokenLessThanEq, hclsyntax.TokenGreaterThan,
			hclsyntax.TokenGreaterThanEq, hclsyntax.TokenAnd, hclsyntax.TokenOr, hclsyntax.TokenBang,
			hclsyntax.TokenQuestion:
			top.ops++
			depth++
		default:
			continue
		}
		if depth > MaxNesting {
			return hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "Nested too deeply",
				Detail: fmt.Sprintf("Blocks, brackets, templates and chained operators nest more than %d levels deep here. Write the value more simply.",
					MaxNesting),
				Subject: tok.Range.Ptr(),
			}}
		}
	}
	return nil
}

// isFor reports whether the tokens from i on, past newlines, comments and a strip
// marker, start a for expression or directive: "for" followed by a name.
func isFor(tokens hclsyntax.Tokens, i int) bool {
	var idents []string
	for ; i < len(tokens) && len(idents) < 2; i++ {
		switch t := tokens[i]; t.Type {
		case hclsyntax.TokenNewline, hclsyntax.TokenComment, hclsyntax.TokenBitwiseNot:
		case hclsyntax.TokenIdent:
			idents = append(idents, string(t.Bytes))
		default:
			return false
		}
	}
	return len(idents) == 2 && idents[0] == "for"
}

// checkJSONNesting bounds the nesting of a file in HCL's JSON syntax: its arrays and
// objects, and the templates of its strings, which HCL parses when it evaluates them.
func checkJSONNesting(filename string, src []byte) hcl.Diagnostics {
	depth := 0
	for i := 0; i < len(src); i++ {
		switch src[i] {
		case '[', '{':
			depth++
			if depth > MaxNesting {
				pos := posAt(src, i)
				return hcl.Diagnostics{{
					Severity: hcl.DiagError,
					Summary:  "Nested too deeply",
					Detail:   fmt.Sprintf("Arrays and objects nest more than %d levels deep here.", MaxNesting),
					Subject:  &hcl.Range{Filename: filename, Start: pos, End: hcl.Pos{Line: pos.Line, Column: pos.Column + 1, Byte: pos.Byte + 1}},
				}}
			}
		case ']', '}':
			depth--
		case '"':
			j := i + 1
			for j < len(src) && src[j] != '"' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(src) {
				return nil // unterminated: the parser says so
			}
			lit := src[i : j+1]
			if bytes.Contains(lit, []byte("${")) || bytes.Contains(lit, []byte("%{")) {
				var s string
				if json.Unmarshal(lit, &s) == nil {
					tokens, _ := hclsyntax.LexTemplate([]byte(s), filename, posAt(src, i+1))
					if diags := checkNesting(tokens, depth); diags.HasErrors() {
						return diags
					}
				}
			}
			i = j
		}
	}
	return nil
}
