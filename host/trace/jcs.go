package trace

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxNesting bounds how deeply arrays and objects may nest in any JSON text the package
// canonicalizes, the same bound encoding/json applies.
const maxNesting = 10000

// Canonicalize returns the canonical form of the JSON text in, as RFC 8785 (JSON
// Canonicalization Scheme) defines it: no insignificant whitespace, object members sorted by
// the UTF-16 code units of their names, strings with the minimal escaping of ECMAScript's
// JSON.stringify, and numbers as IEEE 754 doubles serialized the way ECMAScript does.
//
// It rejects what RFC 8785 requires an implementation to reject: text that is not JSON
// (RFC 8259), invalid UTF-8, lone surrogates in \u escapes, duplicate member names, and
// numbers outside the range of a double. Integers beyond 2^53 are kept only as precisely as a
// double holds them, as in ECMAScript; carry such values as strings.
func Canonicalize(in []byte) ([]byte, error) {
	return canonicalize(in, false)
}

// canonicalize is Canonicalize; with exactIntegers it refuses an integer literal that the
// canonical form would round (beyond 2^53), rather than change a caller's data silently.
func canonicalize(in []byte, exactIntegers bool) ([]byte, error) {
	p := jcsParser{in: in, out: make([]byte, 0, len(in)), exactIntegers: exactIntegers}
	p.skipSpace()
	if err := p.value(0); err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.in) {
		return nil, p.errorf("unexpected %q after the JSON value", p.in[p.pos])
	}
	return p.out, nil
}

// canonicalJSON marshals v with encoding/json and returns the canonical form of the result.
func canonicalJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return Canonicalize(b)
}

// jcsParser is a strict RFC 8259 parser over in that writes the canonical form to out as it
// goes: values in place, an object's members in the order they come, then, when the object
// ends, moved into sorted order if they were not in it. What it keeps beyond the output is
// one span per member of the objects being parsed, so memory stays a small multiple of the
// input whatever its shape (a tree of the values took ~80 bytes per value).
type jcsParser struct {
	in  []byte
	pos int
	out []byte
	// spans holds the members of the objects being parsed, innermost last; each object
	// drops its own when it ends.
	spans []jspan
	// scratch is reused to reorder an object's members.
	scratch []byte
	// exactIntegers refuses integers that a double does not hold exactly.
	exactIntegers bool
}

// jspan is one member of an object as written to out: its decoded name and where its
// `"name":value` text starts and ends in out.
type jspan struct {
	name       []byte
	start, end int
}

// SyntaxError is returned by Canonicalize for text it cannot canonicalize; Offset is the byte
// offset in the input where the problem was found.
type SyntaxError struct {
	Offset int
	Msg    string
}

// Error implements error.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte %d: %s", e.Offset, e.Msg)
}

func (p *jcsParser) errorf(format string, args ...any) error {
	return &SyntaxError{Offset: p.pos, Msg: fmt.Sprintf(format, args...)}
}

func (p *jcsParser) skipSpace() {
	for p.pos < len(p.in) {
		switch p.in[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// value parses the value at p.pos and writes its canonical form; depth is the nesting of
// its container.
func (p *jcsParser) value(depth int) error {
	if p.pos >= len(p.in) {
		return p.errorf("unexpected end of input")
	}
	switch c := p.in[p.pos]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		s, err := p.str()
		if err == nil {
			p.out = appendString(p.out, s)
		}
		return err
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	default:
		return p.errorf("unexpected %q", c)
	}
}

func (p *jcsParser) literal(word string) error {
	if !bytes.HasPrefix(p.in[p.pos:], []byte(word)) {
		return p.errorf("invalid literal, want %q", word)
	}
	p.pos += len(word)
	p.out = append(p.out, word...)
	return nil
}

func (p *jcsParser) object(depth int) error {
	if depth > maxNesting {
		return p.errorf("nesting deeper than %d levels", maxNesting)
	}
	p.pos++ // '{'
	p.out = append(p.out, '{')
	p.skipSpace()
	if p.pos < len(p.in) && p.in[p.pos] == '}' {
		p.pos++
		p.out = append(p.out, '}')
		return nil
	}
	mark := len(p.spans)
	defer func() { p.spans = p.spans[:mark] }()
	for {
		p.skipSpace()
		if p.pos >= len(p.in) || p.in[p.pos] != '"' {
			return p.errorf("expected a member name")
		}
		name, err := p.str()
		if err != nil {
			return err
		}
		p.skipSpace()
		if p.pos >= len(p.in) || p.in[p.pos] != ':' {
			return p.errorf("expected ':' after member name")
		}
		p.pos++
		p.skipSpace()
		start := len(p.out)
		p.out = appendString(p.out, name)
		p.out = append(p.out, ':')
		if err := p.value(depth); err != nil {
			return err
		}
		p.spans = append(p.spans, jspan{name: name, start: start, end: len(p.out)})
		p.skipSpace()
		if p.pos >= len(p.in) {
			return p.errorf("unexpected end of input in object")
		}
		if p.in[p.pos] == '}' {
			p.pos++
			break
		}
		if p.in[p.pos] != ',' {
			return p.errorf("expected ',' or '}' in object, found %q", p.in[p.pos])
		}
		p.pos++
		p.out = append(p.out, ',')
	}
	p.out = append(p.out, '}')
	kids := p.spans[mark:]
	sorted := true
	for i := 1; i < len(kids) && sorted; i++ {
		sorted = compareUTF16(kids[i-1].name, kids[i].name) < 0
	}
	if sorted {
		return nil
	}
	slices.SortStableFunc(kids, func(a, b jspan) int { return compareUTF16(a.name, b.name) })
	for i := 1; i < len(kids); i++ {
		if bytes.Equal(kids[i].name, kids[i-1].name) {
			return p.errorf("duplicate member name %q", kids[i].name)
		}
	}
	// Rewrite the members between the braces in sorted order.
	first := kids[0].start
	for _, k := range kids {
		first = min(first, k.start)
	}
	buf := slices.Grow(p.scratch[:0], len(p.out)-1-first)
	for i, k := range kids {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, p.out[k.start:k.end]...)
	}
	copy(p.out[first:], buf)
	p.scratch = buf
	return nil
}

func (p *jcsParser) array(depth int) error {
	if depth > maxNesting {
		return p.errorf("nesting deeper than %d levels", maxNesting)
	}
	p.pos++ // '['
	p.out = append(p.out, '[')
	p.skipSpace()
	if p.pos < len(p.in) && p.in[p.pos] == ']' {
		p.pos++
		p.out = append(p.out, ']')
		return nil
	}
	for {
		p.skipSpace()
		if err := p.value(depth); err != nil {
			return err
		}
		p.skipSpace()
		if p.pos >= len(p.in) {
			return p.errorf("unexpected end of input in array")
		}
		if p.in[p.pos] == ']' {
			p.pos++
			p.out = append(p.out, ']')
			return nil
		}
		if p.in[p.pos] != ',' {
			return p.errorf("expected ',' or ']' in array, found %q", p.in[p.pos])
		}
		p.pos++
		p.out = append(p.out, ',')
	}
}

// str parses the string at p.pos (which holds '"') and returns its decoded value, which
// points into the input when the string holds no escape.
func (p *jcsParser) str() ([]byte, error) {
	p.pos++ // opening quote
	var b []byte
	plain := true
	begin := p.pos
	for {
		// Take the run of bytes that need no decoding at once.
		start := p.pos
		for p.pos < len(p.in) {
			c := p.in[p.pos]
			if c == '"' || c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
				break
			}
			p.pos++
		}
		if !plain {
			b = append(b, p.in[start:p.pos]...)
		}
		if p.pos >= len(p.in) {
			return nil, p.errorf("unterminated string")
		}
		switch c := p.in[p.pos]; {
		case c == '"':
			p.pos++
			if plain {
				return p.in[begin : p.pos-1], nil
			}
			return b, nil
		case c < 0x20:
			return nil, p.errorf("control character 0x%02x in string must be escaped", c)
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(p.in[p.pos:])
			if r == utf8.RuneError && size <= 1 {
				return nil, p.errorf("invalid UTF-8 in string")
			}
			if !plain {
				b = append(b, p.in[p.pos:p.pos+size]...)
			}
			p.pos += size
		default: // backslash
			if plain {
				plain = false
				b = append(make([]byte, 0, p.pos-begin+16), p.in[begin:p.pos]...)
			}
			var err error
			if b, err = p.escape(b); err != nil {
				return nil, err
			}
		}
	}
}

// escape decodes the escape sequence at p.pos and appends it to b.
func (p *jcsParser) escape(b []byte) ([]byte, error) {
	if p.pos+1 >= len(p.in) {
		return nil, p.errorf("unterminated escape sequence")
	}
	c := p.in[p.pos+1]
	p.pos += 2
	switch c {
	case '"', '\\', '/':
		return append(b, c), nil
	case 'b':
		return append(b, '\b'), nil
	case 'f':
		return append(b, '\f'), nil
	case 'n':
		return append(b, '\n'), nil
	case 'r':
		return append(b, '\r'), nil
	case 't':
		return append(b, '\t'), nil
	case 'u':
		r, err := p.hex4()
		if err != nil {
			return nil, err
		}
		switch {
		case utf16.IsSurrogate(r) && r < 0xDC00:
			// A high surrogate must be followed by an escaped low surrogate.
			if p.pos+1 >= len(p.in) || p.in[p.pos] != '\\' || p.in[p.pos+1] != 'u' {
				return nil, p.errorf("lone surrogate \\u%04x", r)
			}
			p.pos += 2
			lo, err := p.hex4()
			if err != nil {
				return nil, err
			}
			if lo < 0xDC00 || lo > 0xDFFF {
				return nil, p.errorf("high surrogate \\u%04x followed by \\u%04x, not a low surrogate", r, lo)
			}
			return utf8.AppendRune(b, utf16.DecodeRune(r, lo)), nil
		case utf16.IsSurrogate(r):
			return nil, p.errorf("lone surrogate \\u%04x", r)
		default:
			return utf8.AppendRune(b, r), nil
		}
	default:
		return nil, p.errorf("invalid escape sequence \\%c", c)
	}
}

func (p *jcsParser) hex4() (rune, error) {
	if p.pos+4 > len(p.in) {
		return 0, p.errorf("truncated \\u escape")
	}
	var r rune
	for _, c := range p.in[p.pos : p.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		case c >= 'A' && c <= 'F':
			r |= rune(c-'A') + 10
		default:
			return 0, p.errorf("invalid hex digit %q in \\u escape", c)
		}
	}
	p.pos += 4
	return r, nil
}

// number parses a number per the RFC 8259 grammar and writes it canonically.
func (p *jcsParser) number() error {
	start := p.pos
	digits := func() int {
		n := 0
		for p.pos < len(p.in) && p.in[p.pos] >= '0' && p.in[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	if p.in[p.pos] == '-' {
		p.pos++
	}
	switch {
	case p.pos < len(p.in) && p.in[p.pos] == '0':
		p.pos++
	case digits() == 0:
		return p.errorf("invalid number")
	}
	if p.pos < len(p.in) && p.in[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return p.errorf("invalid number: no digits after '.'")
		}
	}
	if p.pos < len(p.in) && (p.in[p.pos] == 'e' || p.in[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.in) && (p.in[p.pos] == '+' || p.in[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return p.errorf("invalid number: no digits in exponent")
		}
	}
	lit := p.in[start:p.pos]
	if isShortInt(lit) {
		// Up to 15 digits, an integer is exact in a double and ECMAScript writes it as is.
		p.out = append(p.out, lit...)
		return nil
	}
	text := string(lit)
	f, err := strconv.ParseFloat(text, 64)
	switch {
	case err == nil:
	case errors.Is(err, strconv.ErrRange) && math.IsInf(f, 0):
		return &SyntaxError{Offset: start, Msg: fmt.Sprintf("number %s is outside the range of an IEEE 754 double", text)}
	case errors.Is(err, strconv.ErrRange):
		// Underflow to zero or a subnormal, which is what ECMAScript does too.
	default:
		return &SyntaxError{Offset: start, Msg: fmt.Sprintf("number %s: %v", text, err)}
	}
	if p.exactIntegers && bytes.IndexAny(lit, ".eE") < 0 && !inexactOK(lit, f) {
		return &SyntaxError{Offset: start, Msg: fmt.Sprintf("integer %s cannot be kept exactly: canonical JSON holds numbers as IEEE 754 doubles, exact only up to 2^53 (9007199254740992); send it as a string", text)}
	}
	s, err := formatNumber(f)
	if err != nil {
		return &SyntaxError{Offset: start, Msg: err.Error()}
	}
	p.out = append(p.out, s...)
	return nil
}

// inexactOK reports whether the integer literal lit keeps its value as the double f.
func inexactOK(lit []byte, f float64) bool {
	n, ok := new(big.Int).SetString(string(lit), 10)
	if !ok {
		return false
	}
	g, acc := new(big.Float).SetFloat64(f).Int(nil)
	return acc == big.Exact && g.Cmp(n) == 0
}

// isShortInt reports whether lit (a valid JSON number) is an integer of at most 15 digits
// other than -0.
func isShortInt(lit []byte) bool {
	digits := lit
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
		if len(digits) == 1 && digits[0] == '0' {
			return false
		}
	}
	if len(digits) == 0 || len(digits) > 15 {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// formatNumber renders f as ECMAScript's Number.prototype.toString does (ECMA-262,
// Number::toString), which is what RFC 8785 prescribes: the shortest decimal that reads back
// as f, in plain notation from 1e-6 up to 1e21 and in exponent notation outside.
func formatNumber(f float64) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", fmt.Errorf("%v cannot be represented in JSON", f)
	}
	if f == 0 { // both zeros serialize as "0"
		return "0", nil
	}
	if a := math.Abs(f); a < 1e21 && a >= 1e-6 {
		return strconv.FormatFloat(f, 'f', -1, 64), nil
	}
	// Go writes at least two exponent digits ("1e-07"); ECMAScript writes as few as needed.
	s := strconv.FormatFloat(f, 'e', -1, 64)
	i := strings.IndexByte(s, 'e')
	mant, sign, exp := s[:i], s[i+1], strings.TrimLeft(s[i+2:], "0")
	return mant + "e" + string(sign) + exp, nil
}

// compareUTF16 orders a and b by their UTF-16 code units, as RFC 8785 sorts member names.
// It differs from byte order only between characters above U+FFFF (surrogate pairs,
// 0xD800-0xDBFF first) and those from U+E000 to U+FFFF.
func compareUTF16(a, b []byte) int {
	for len(a) > 0 && len(b) > 0 {
		if a[0] < utf8.RuneSelf && b[0] < utf8.RuneSelf {
			if a[0] != b[0] {
				return cmp.Compare(a[0], b[0])
			}
			a, b = a[1:], b[1:]
			continue
		}
		ra, na := utf8.DecodeRune(a)
		rb, nb := utf8.DecodeRune(b)
		if ra != rb {
			if ra >= 0x10000 && rb >= 0x10000 {
				return cmp.Compare(ra, rb)
			}
			return cmp.Compare(firstUnit(ra), firstUnit(rb))
		}
		a, b = a[na:], b[nb:]
	}
	return cmp.Compare(len(a), len(b))
}

// firstUnit returns the first UTF-16 code unit of r.
func firstUnit(r rune) rune {
	if r >= 0x10000 {
		return 0xD800 + (r-0x10000)>>10
	}
	return r
}

const hexDigits = "0123456789abcdef"

// writeString writes s quoted as appendString does.
func writeString(out *bytes.Buffer, s []byte) {
	out.Write(appendString(out.AvailableBuffer(), s))
}

// appendString appends s quoted the way ECMAScript's JSON.stringify does: the two-character
// escapes where JSON has one, \u00xx (lower-case hex) for other control characters, and every
// other character as itself.
func appendString(out []byte, s []byte) []byte {
	out = append(out, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		out = append(out, s[start:i]...)
		switch c {
		case '"':
			out = append(out, `\"`...)
		case '\\':
			out = append(out, `\\`...)
		case '\b':
			out = append(out, `\b`...)
		case '\f':
			out = append(out, `\f`...)
		case '\n':
			out = append(out, `\n`...)
		case '\r':
			out = append(out, `\r`...)
		case '\t':
			out = append(out, `\t`...)
		default:
			out = append(out, `\u00`...)
			out = append(out, hexDigits[c>>4], hexDigits[c&0xF])
		}
		start = i + 1
	}
	out = append(out, s[start:]...)
	return append(out, '"')
}
