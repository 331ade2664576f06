// Package clip shortens strings to a number of bytes without splitting a UTF-8 character,
// for values quoted in messages, findings and logs.
package clip

import "unicode/utf8"

// Prefix returns the longest prefix of s of at most n bytes that does not end inside a
// character. It returns s itself when s is no longer than n.
func Prefix(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n = max(n, 0)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Marked returns Prefix(s, n) followed by "…" when s is longer than n bytes, and s
// otherwise. The mark is not counted in n.
func Marked(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return Prefix(s, n) + "…"
}
