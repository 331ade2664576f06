package main

import (
	"encoding/base64"
	"sort"
	"strings"
	"unicode/utf8"
)

// redactor removes secrets from everything that leaves the plugin: errors, log lines,
// health answers, and the answers themselves (streamed tokens, the output, the finish
// reason). Providers and proxies sometimes echo credentials in error bodies, and a
// misconfigured proxy or a model that was shown a key may put it in an answer, so every
// such string goes through it, whatever its origin.
//
// A secret is caught as its exact bytes and, for secrets of minEncodedSecret bytes or
// more, in base64 (standard and URL alphabets): its own encoding, and the part of the
// encoding that depends on the secret alone wherever it sits in a longer encoded text
// (as in "Basic base64(user:key)"; up to two bytes of the secret beside that part may
// stay visible there). Other encodings (JSON or URL escapes, hex) are not looked for;
// API keys are plain ASCII, so those rarely change them. An empty secret matches nothing.
//
// Matching is leftmost, and at one position the longest pattern wins, so a secret that
// contains another is replaced whole. The zero redactor removes nothing.
type redactor struct {
	m *matcher
}

// redacted replaces a secret.
const redacted = "[REDACTED]"

// minEncodedSecret is the shortest secret also looked for in base64: the encoding of a
// shorter one is so short that it could turn up in ordinary text.
const minEncodedSecret = 12

// matcher holds the patterns that a redactor replaces.
type matcher struct {
	// byFirst holds the patterns by their first byte, longest first.
	byFirst [256][]string
	// longest is the length of the longest pattern.
	longest int
}

func newRedactor(secrets []string) redactor {
	seen := map[string]bool{}
	var pats []string
	for _, k := range secrets {
		for _, p := range secretForms(k) {
			if p != "" && !seen[p] {
				seen[p] = true
				pats = append(pats, p)
			}
		}
	}
	if len(pats) == 0 {
		return redactor{}
	}
	// Longest first, so that the first pattern that matches at a position is the longest.
	sort.Slice(pats, func(i, j int) bool {
		if len(pats[i]) != len(pats[j]) {
			return len(pats[i]) > len(pats[j])
		}
		return pats[i] < pats[j]
	})
	m := &matcher{longest: len(pats[0])}
	for _, p := range pats {
		m.byFirst[p[0]] = append(m.byFirst[p[0]], p)
	}
	return redactor{m: m}
}

// secretForms returns the strings that give a secret away: itself and, when it is long
// enough, its base64 forms.
func secretForms(k string) []string {
	if k == "" {
		return nil
	}
	forms := []string{k}
	if len(k) < minEncodedSecret {
		return forms
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		forms = append(forms, enc.EncodeToString([]byte(k)))
		// With o bytes before it in its 3-byte group, the secret's encoding depends on
		// the bytes around it only in its first and last group: keep the whole groups
		// in between, made of the secret's bytes alone.
		for o := range 3 {
			b := enc.EncodeToString(append(make([]byte, o), k...))
			skip := 0
			if o > 0 {
				skip = 4
			}
			n := (len(k) - (3-o)%3) / 3
			forms = append(forms, b[skip:skip+4*n])
		}
	}
	return forms
}

// clean returns s without any secret.
func (r redactor) clean(s string) string {
	if r.m == nil || s == "" {
		return s
	}
	out, _ := r.m.scan(s, true)
	return out
}

// stream returns a redactor for a text that arrives in pieces, such as a streamed answer.
func (r redactor) stream() *streamRedactor { return &streamRedactor{m: r.m} }

// scan returns s with every pattern replaced. Unless final (more text may follow), it
// stops at the first position where a pattern may begin but s ends before it can be
// told whether one does, and before an unfinished UTF-8 sequence at the end; n is the
// number of bytes of s it wrote or replaced. The rest is to be scanned again with what
// follows, and gets the same decisions as if the whole text had been scanned at once: a
// decision is made only when no text to come can change it. Text without a secret is
// returned as is, without a copy.
func (m *matcher) scan(s string, final bool) (out string, n int) {
	var b strings.Builder
	raw := 0 // the start of the bytes not yet written, none of them part of a match
	end := len(s)
scan:
	for p := 0; p < len(s); {
		pats := m.byFirst[s[p]]
		if len(pats) == 0 {
			p++
			continue
		}
		rest := s[p:]
		k := 0
		for _, pat := range pats {
			if len(rest) >= len(pat) {
				if rest[:len(pat)] == pat {
					k = len(pat)
					break
				}
			} else if !final && strings.HasPrefix(pat, rest) {
				// A longer pattern may still match here: wait for more text.
				end = p
				break scan
			}
		}
		if k == 0 {
			p++
			continue
		}
		if raw == 0 && b.Len() == 0 {
			b.Grow(len(s))
		}
		b.WriteString(s[raw:p])
		b.WriteString(redacted)
		p += k
		raw = p
	}
	if !final {
		end = raw + completeUTF8(s[raw:end])
	}
	if b.Len() == 0 {
		return s[:end], end
	}
	b.WriteString(s[raw:end])
	return b.String(), end
}

// completeUTF8 returns the length of s without an unfinished UTF-8 sequence at its end.
// Invalid bytes count as complete: no byte that follows can make them valid.
func completeUTF8(s string) int {
	for i := len(s) - 1; i >= 0 && i >= len(s)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(s[i]) {
			if !utf8.FullRuneInString(s[i:]) {
				return i
			}
			break
		}
	}
	return len(s)
}

// streamRedactor redacts a text that arrives in pieces: a secret split over several
// pieces is caught whole. Of each piece it returns at once all but the end that may be
// the start of a secret (fewer bytes than the longest pattern) or a character cut
// between two pieces; those bytes come with the next piece, or from flush, which is
// called however the text ends (answer, error, cancel). Its output, joined, is what clean gives for the joined pieces, however
// the text was split. Each piece costs time in its length plus that held-back end.
type streamRedactor struct {
	m    *matcher
	held string
}

// write takes the next piece of the text and returns what may be shown of it now.
func (s *streamRedactor) write(piece string) string {
	text := s.held + piece
	if s.m == nil {
		n := completeUTF8(text)
		s.held = text[n:]
		return text[:n]
	}
	out, n := s.m.scan(text, false)
	s.held = text[n:]
	return out
}

// flush ends the text and returns what was held back, redacted. The redactor may then
// take a new text.
func (s *streamRedactor) flush() string {
	text := s.held
	s.held = ""
	if s.m == nil || text == "" {
		return text
	}
	out, _ := s.m.scan(text, true)
	return out
}
