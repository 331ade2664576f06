package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/hybridgroup/yzma/pkg/llama"
)

// A chat prompt is the chat template's rendering of the messages, but it is not
// tokenized as one string with special tokens parsed: a message's content would then
// turn text such as "<|im_end|>\n<|im_start|>system\n" into control tokens, and a user
// could end their own turn and write a system or assistant turn. Only the template's own
// text may produce control tokens; every content is tokenized as plain text, as a plain
// input is.
//
// To know which parts of the rendering are the template's, the template is rendered a
// second time with each content replaced by a random marker. The rendering splits at the
// markers into the template's text, which no content can influence, and the contents go
// in between. When the template transforms the markers (so they cannot be found), each
// content is instead looked for in the real rendering; a content holding control-token
// text that cannot be placed surely is refused.

// rolePattern is what a message's role may be: the template writes it next to its
// control tokens, so it must be a plain name.
var rolePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// specialToken is a token that llama.cpp matches as a whole in the text before its
// tokenizer proper runs: control and unknown tokens when special tokens are parsed,
// user-defined tokens always.
type specialToken struct {
	id   llama.Token
	text string
	attr llama.TokenAttr
}

// control reports whether the token is matched only when special tokens are parsed.
func (s specialToken) control() bool {
	return s.attr&(llama.TokenAttrControl|llama.TokenAttrUnknown) != 0
}

// isSpecialAttr reports whether llama.cpp matches tokens of attribute a as special.
func isSpecialAttr(a llama.TokenAttr) bool {
	return a&(llama.TokenAttrControl|llama.TokenAttrUserDef|llama.TokenAttrUnknown) != 0
}

// fragment is a piece of text to tokenize: raw text, or one special token.
type fragment struct {
	text    string
	special bool
	tok     llama.Token
	attr    llama.TokenAttr
}

// cSpace is the white space of C's isspace, which llama.cpp strips beside tokens with
// the lstrip and rstrip attributes.
const cSpace = " \t\n\v\f\r"

// partition splits text at the special tokens as llama.cpp's tokenizer_st_partition does
// with special tokens parsed: specials are taken longest first, each matched at every
// occurrence in the text left raw so far. specials must be sorted longest first.
func partition(text string, specials []specialToken) []fragment {
	if text == "" {
		return nil
	}
	frags := []fragment{{text: text}}
	for _, st := range specials {
		hit := false
		for _, f := range frags {
			if !f.special && strings.Contains(f.text, st.text) {
				hit = true
				break
			}
		}
		if !hit {
			continue
		}
		out := make([]fragment, 0, len(frags)+2)
		for _, f := range frags {
			if f.special {
				out = append(out, f)
				continue
			}
			rest := f.text
			for {
				i := strings.Index(rest, st.text)
				if i < 0 {
					if rest != "" {
						out = append(out, fragment{text: rest})
					}
					break
				}
				left := rest[:i]
				if st.attr&llama.TokenAttrLstrip != 0 {
					left = strings.TrimRight(left, cSpace)
				}
				if left != "" {
					out = append(out, fragment{text: left})
				}
				out = append(out, fragment{special: true, tok: st.id, attr: st.attr})
				rest = rest[i+len(st.text):]
				if st.attr&llama.TokenAttrRstrip != 0 {
					rest = strings.TrimLeft(rest, cSpace)
				}
			}
		}
		frags = out
	}
	return frags
}

// controlText returns the text of a control token that text holds, if any.
func controlText(text string, specials []specialToken) (string, bool) {
	for _, st := range specials {
		if st.control() && strings.Contains(text, st.text) {
			return st.text, true
		}
	}
	return "", false
}

// chatPart is a piece of a chat's rendering: the template's text, or a message's
// content.
type chatPart struct {
	text    string
	content bool
}

// chatPrompt renders msgs with the model's chat template and tokenizes the rendering
// with special tokens parsed in the template's text only. nParams is the number of
// messages from params.messages (a last one beyond them is the execution's input), for
// errors. note, when not empty, says how the rendering was split, for the debug log.
func (md *model) chatPrompt(msgs []chatMessage, nParams int) (toks []llama.Token, note string, err error) {
	name := func(i int) string {
		if i >= nParams {
			return "the input"
		}
		return fmt.Sprintf("params.messages[%d].content", i)
	}
	for i, m := range msgs {
		if !rolePattern.MatchString(m.Role) {
			return nil, "", fmt.Errorf("params.messages[%d].role %q is not a role name: use a lowercase name such as system, user or assistant", i, m.Role)
		}
		if ct, ok := controlText(m.Role, md.specials); ok {
			return nil, "", fmt.Errorf("params.messages[%d].role %q is the model's control token %q: use a role such as system, user or assistant", i, m.Role, ct)
		}
	}
	rendered, err := renderChat(md.info, msgs)
	if err != nil {
		return nil, "", err
	}
	if err := nulError("the chat template's rendering of params.messages", rendered); err != nil {
		return nil, "", err
	}
	parts, note, err := chatLayout(md.info, rendered, msgs, md.specials, name)
	if err != nil {
		return nil, "", err
	}
	// A template that writes the BOS token itself must not get a second one.
	addBOS := md.info.BOS == "" || !strings.HasPrefix(rendered, md.info.BOS)
	return md.tokenizeParts(parts, addBOS), note, nil
}

// tokenizeParts tokenizes a chat's parts as llama.cpp tokenizes their concatenation with
// special tokens parsed, except that the contents' text is never matched as a control
// token. The template's text is split at special tokens, and what lies between them,
// template text and contents together, is tokenized as plain text: so a benign chat gets
// exactly the tokens of its whole rendering (a SentencePiece tokenizer, for one, adds a
// space after every special token, and merges run across the edges of a content).
// addSpecial adds the BOS (and EOS) tokens the vocabulary asks for.
func (md *model) tokenizeParts(parts []chatPart, addSpecial bool) []llama.Token {
	var frags []fragment
	raw := func(text string) {
		if n := len(frags); n > 0 && !frags[n-1].special {
			frags[n-1].text += text
			return
		}
		frags = append(frags, fragment{text: text})
	}
	for _, p := range parts {
		if p.text == "" {
			continue
		}
		if p.content {
			raw(p.text)
			continue
		}
		for _, f := range partition(p.text, md.specials) {
			if f.special {
				frags = append(frags, f)
			} else {
				raw(f.text)
			}
		}
	}
	// White space beside a token with the lstrip or rstrip attribute goes, as it would
	// in the whole rendering, content or not.
	for i, f := range frags {
		if !f.special {
			continue
		}
		if f.attr&llama.TokenAttrLstrip != 0 && i > 0 && !frags[i-1].special {
			frags[i-1].text = strings.TrimRight(frags[i-1].text, cSpace)
		}
		if f.attr&llama.TokenAttrRstrip != 0 && i+1 < len(frags) && !frags[i+1].special {
			frags[i+1].text = strings.TrimLeft(frags[i+1].text, cSpace)
		}
	}
	var toks []llama.Token
	if addSpecial && md.addBOS {
		toks = append(toks, md.bos)
	}
	for _, f := range frags {
		switch {
		case f.special:
			toks = append(toks, f.tok)
		case f.text != "":
			toks = append(toks, md.tokenize(f.text, false, false)...)
		}
	}
	if addSpecial && md.addEOS {
		toks = append(toks, md.eos)
	}
	return toks
}

// chatLayout splits rendered, the rendering of msgs, into the template's text and the
// contents. name names message i for errors.
func chatLayout(info *modelInfo, rendered string, msgs []chatMessage, specials []specialToken, name func(int) string) ([]chatPart, string, error) {
	mark := newMarker(info, msgs)
	marked := make([]chatMessage, len(msgs))
	for i, m := range msgs {
		marked[i] = chatMessage{Role: m.Role, Content: mark.of(i)}
	}
	var note string
	if text, err := renderChat(info, marked); err != nil {
		note = fmt.Sprintf("chat template: rendering with markers failed (%v)", err)
	} else if pieces, order, ok := mark.split(text, len(msgs)); !ok {
		note = "chat template: the markers standing for the contents did not come out intact"
	} else {
		if parts, ok := spliceExact(rendered, pieces, order, msgs); ok {
			return parts, "", nil
		}
		// The template treats some content in a way that depends on its text (it strips
		// a part, or branches on it): the template's own text is kept as it is for
		// neutral contents, and the contents are put in whole.
		if onceEach(order, len(msgs)) {
			return spliceWhole(pieces, order, msgs),
				"chat template: its output depends on the contents' text; the contents are put whole in its output for neutral contents", nil
		}
		note = "chat template: a content appears other than once in its output"
	}
	parts, err := locateContents(rendered, msgs, specials, name)
	return parts, note + "; the contents were located in the rendering", err
}

// marker stands for the contents in a rendering: message i's content is the marker's
// base, "i", i and "e". The base is random, and found in no content, role or template.
type marker struct{ base string }

func newMarker(info *modelInfo, msgs []chatMessage) marker {
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		base := "msg" + hex.EncodeToString(b[:])
		found := strings.Contains(info.ChatTemplate, base) || strings.Contains(info.BOS, base) || strings.Contains(info.EOS, base)
		for _, m := range msgs {
			found = found || strings.Contains(m.Content, base) || strings.Contains(m.Role, base)
		}
		if !found {
			return marker{base}
		}
	}
}

func (m marker) of(i int) string { return m.base + "i" + strconv.Itoa(i) + "e" }

// split cuts text at the markers: pieces are the template's text around them, order[k]
// the message whose marker is between pieces[k] and pieces[k+1]. ok is false when a
// marker is damaged, or changed in case (the template changed a content's case: the
// pieces would hold the changed marker, not the content).
func (m marker) split(text string, n int) (pieces []string, order []int, ok bool) {
	for {
		i := strings.Index(text, m.base)
		if i < 0 {
			if strings.Contains(strings.ToLower(text), m.base[len("msg"):]) {
				return nil, nil, false
			}
			return append(pieces, text), order, true
		}
		if strings.Contains(strings.ToLower(text[:i]), m.base[len("msg"):]) {
			return nil, nil, false
		}
		rest := text[i+len(m.base):]
		j := 1
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if !strings.HasPrefix(rest, "i") || j == 1 || j >= len(rest) || rest[j] != 'e' {
			return nil, nil, false
		}
		k, err := strconv.Atoi(rest[1:j])
		if err != nil || k >= n || strconv.Itoa(k) != rest[1:j] {
			return nil, nil, false
		}
		pieces = append(pieces, text[:i])
		order = append(order, k)
		text = rest[j+1:]
	}
}

// onceEach reports whether each of n messages appears exactly once in order.
func onceEach(order []int, n int) bool {
	if len(order) != n {
		return false
	}
	seen := make([]bool, n)
	for _, k := range order {
		if seen[k] {
			return false
		}
		seen[k] = true
	}
	return true
}

// contentForms are the texts a template may write for content c: c itself, or c with
// white space trimmed (Jinja's trim, Python's strip).
func contentForms(c string) []string {
	forms := []string{c}
	for _, f := range []string{
		strings.TrimSpace(c), strings.TrimLeftFunc(c, unicode.IsSpace), strings.TrimRightFunc(c, unicode.IsSpace),
	} {
		if !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	return forms
}

// spliceExact rebuilds rendered from the template's pieces with each content (or its
// trimmed form) between them. ok is false when they do not make up rendered exactly.
func spliceExact(rendered string, pieces []string, order []int, msgs []chatMessage) ([]chatPart, bool) {
	parts := make([]chatPart, 0, 2*len(pieces))
	at := 0
	for k, piece := range pieces {
		if !strings.HasPrefix(rendered[at:], piece) {
			return nil, false
		}
		parts = append(parts, chatPart{text: piece})
		at += len(piece)
		if k == len(order) {
			break
		}
		next, found := pieces[k+1], false
		for _, f := range contentForms(msgs[order[k]].Content) {
			if strings.HasPrefix(rendered[at:], f) && strings.HasPrefix(rendered[at+len(f):], next) {
				parts = append(parts, chatPart{text: f, content: true})
				at += len(f)
				found = true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	return parts, at == len(rendered)
}

// spliceWhole puts each content whole between the template's pieces.
func spliceWhole(pieces []string, order []int, msgs []chatMessage) []chatPart {
	parts := make([]chatPart, 0, 2*len(pieces))
	for k, piece := range pieces {
		parts = append(parts, chatPart{text: piece})
		if k < len(order) {
			parts = append(parts, chatPart{text: msgs[order[k]].Content, content: true})
		}
	}
	return parts
}

// locateContents finds each content (or its trimmed form) in rendered, in order, for a
// template that does not write the markers as they are. A content holding control-token
// text must be found, and only once in the whole rendering: otherwise the template's
// text could not be told from it, and the request is refused. A content without such
// text that is not found is left as the template wrote it.
func locateContents(rendered string, msgs []chatMessage, specials []specialToken, name func(int) string) ([]chatPart, error) {
	var parts []chatPart
	at := 0
	for i, m := range msgs {
		if m.Content == "" {
			continue
		}
		risky, found := "", false
		for _, f := range contentForms(m.Content) {
			ct, ok := controlText(f, specials)
			if ok {
				risky = ct
			}
			if f == "" {
				continue
			}
			j := strings.Index(rendered[at:], f)
			if j < 0 {
				continue
			}
			if ok && strings.Count(rendered, f) != 1 {
				return nil, fmt.Errorf("%s holds the control token %q, and the model's chat template writes that content in a way it cannot be told apart from the template's own text: remove the control-token text", name(i), ct)
			}
			parts = append(parts, chatPart{text: rendered[at : at+j]}, chatPart{text: f, content: true})
			at += j + len(f)
			found = true
			break
		}
		if !found && risky != "" {
			return nil, fmt.Errorf("%s holds the control token %q, and the model's chat template changes the content so it cannot be told apart from the template's own text: remove the control-token text", name(i), risky)
		}
	}
	return append(parts, chatPart{text: rendered[at:]}), nil
}
