package clip

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPrefix(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"hello", 10, "hello"},
		{"hello", 5, "hello"},
		{"hello", 3, "hel"},
		{"hello", 0, ""},
		{"hello", -1, ""},
		{"héllo", 2, "h"},      // é is two bytes: not split
		{"héllo", 3, "hé"},     // ends just after é
		{"日本語", 4, "日"},        // three-byte characters
		{"日本語", 2, ""},         // no whole character fits
		{"a\xffb", 2, "a\xff"}, // an invalid byte counts as a character of its own
	} {
		if got := Prefix(tc.s, tc.n); got != tc.want {
			t.Errorf("Prefix(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

func TestMarked(t *testing.T) {
	if got := Marked("short", 5); got != "short" {
		t.Errorf("Marked kept whole = %q", got)
	}
	if got := Marked("日本語です", 7); got != "日本…" {
		t.Errorf("Marked = %q, want %q", got, "日本…")
	}
	// Every cut of a text of mixed widths is valid UTF-8 and at most n bytes before the mark.
	s := strings.Repeat("aé日😀", 8)
	for n := 0; n <= len(s); n++ {
		p := Prefix(s, n)
		if !utf8.ValidString(p) || len(p) > n || !strings.HasPrefix(s, p) || len(p) < n-3 {
			t.Fatalf("Prefix(s, %d) = %q", n, p)
		}
	}
}
