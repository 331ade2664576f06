package main

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// clean returns s, text from the API (or from a bundle), fit to print on an operator's
// terminal in a table cell or a line of its own: what a terminal would act on, or what
// would split a cell or a row, is escaped. That is C0 controls (escape sequences, but also
// tab and newline), DEL, C1 controls, the bidirectional controls that reorder what follows
// them (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), the line and paragraph
// separators U+2028 and U+2029, and bytes that are not UTF-8. They are written as Go
// escapes: \t, \n, \r, \x1b, \u202e. A session named "evil\x1b[2J" cannot clear the
// screen of whoever lists sessions.
//
// Output a program printed (exec) is not text from the API in this sense: it is passed
// through as it is, as ssh passes a remote command's output.
func clean(s string) string {
	i := 0
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if escaped(r, n) {
			break
		}
		i += n
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case !escaped(r, n):
			b.WriteString(s[i : i+n])
		case r == utf8.RuneError:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += n
	}
	return b.String()
}

// escaped reports whether clean escapes rune r, decoded from n bytes.
func escaped(r rune, n int) bool {
	switch {
	case r == utf8.RuneError && n == 1: // a byte that is not UTF-8
		return true
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	case r == 0x2028, r == 0x2029:
		return true
	}
	return false
}

// cleanAll returns the strings of ss, each cleaned.
func cleanAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = clean(s)
	}
	return out
}

// cleanLines is clean for text of several lines (a PEM block): each line is cleaned, the
// newlines between them kept.
func cleanLines(s string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		body, nl := strings.CutSuffix(l, "\n")
		lines[i] = clean(body)
		if nl {
			lines[i] += "\n"
		}
	}
	return strings.Join(lines, "")
}
