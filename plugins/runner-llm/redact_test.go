package main

import (
	"encoding/base64"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"
)

// patternsOf lists a redactor's patterns, longest first.
func patternsOf(r redactor) []string {
	var out []string
	if r.m == nil {
		return nil
	}
	for _, ps := range r.m.byFirst {
		out = append(out, ps...)
	}
	sort.Slice(out, func(i, j int) bool {
		if len(out[i]) != len(out[j]) {
			return len(out[i]) > len(out[j])
		}
		return out[i] < out[j]
	})
	return out
}

// oracle redacts with the standard library's replacer, which also replaces leftmost
// and, at one position, the first listed (here the longest) pattern.
func oracle(r redactor, s string) string {
	pats := patternsOf(r)
	if len(pats) == 0 {
		return s
	}
	var pairs []string
	for _, p := range pats {
		pairs = append(pairs, p, redacted)
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// streamAll feeds pieces to a stream redactor, checking each output and what is held
// back, and returns the outputs.
func streamAll(t *testing.T, r redactor, pieces []string) []string {
	t.Helper()
	sr := r.stream()
	// At most a possible secret's start, or an unfinished character.
	maxHeld := utf8.UTFMax - 1
	if r.m != nil {
		maxHeld = max(r.m.longest-1, maxHeld)
	}
	var out []string
	for _, p := range pieces {
		o := sr.write(p)
		if !utf8.ValidString(o) {
			t.Fatalf("piece %q gave invalid UTF-8 %q", p, o)
		}
		if len(sr.held) > maxHeld {
			t.Fatalf("after %q, %d bytes held back (%q), at most %d allowed", p, len(sr.held), sr.held, maxHeld)
		}
		out = append(out, o)
	}
	return append(out, sr.flush())
}

// TestStreamRedactorAnySplit is a property test: for random texts full of secrets,
// parts of secrets and multi-byte characters, cut into pieces at random bytes, the
// stream redactor's output joined is what clean gives for the whole text, which is what
// strings.Replacer gives, and each output is valid UTF-8.
func TestStreamRedactorAnySplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	atoms := []string{"a", "b", "s", "k", "-", " ", "é", "日", "🙂"}
	word := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(atoms[rng.IntN(len(atoms))])
		}
		return b.String()
	}
	for iter := range 3000 {
		// Small alphabets make overlapping secrets and near misses common.
		var secrets []string
		for range 1 + rng.IntN(3) {
			secrets = append(secrets, word(rng.IntN(6)))
		}
		if iter%5 == 0 {
			secrets = append(secrets, "sk-"+word(10+rng.IntN(8))) // long enough for base64 forms
		}
		r := newRedactor(secrets)
		pats := patternsOf(r)
		var text strings.Builder
		for range rng.IntN(20) {
			switch k := rng.IntN(4); {
			case k == 0 && len(pats) > 0:
				text.WriteString(pats[rng.IntN(len(pats))])
			case k == 1 && len(pats) > 0:
				p := pats[rng.IntN(len(pats))]
				text.WriteString(p[:rng.IntN(len(p))]) // may cut a rune: fixed below
			default:
				text.WriteString(word(rng.IntN(5)))
			}
		}
		whole := strings.ToValidUTF8(text.String(), "?")
		want := r.clean(whole)
		if o := oracle(r, whole); want != o {
			t.Fatalf("secrets %q, text %q: clean %q, strings.Replacer %q", secrets, whole, want, o)
		}
		for range 5 {
			var pieces []string
			for rest := whole; rest != ""; {
				n := 1 + rng.IntN(min(len(rest), 8))
				if rng.IntN(4) == 0 {
					n = rng.IntN(len(rest) + 1) // empty pieces too
				}
				pieces = append(pieces, rest[:n])
				rest = rest[n:]
			}
			if got := strings.Join(streamAll(t, r, pieces), ""); got != want {
				t.Fatalf("secrets %q, pieces %q: streamed %q, want %q", secrets, pieces, got, want)
			}
		}
	}
}

// TestStreamRedactorHoldsOnlyWhatMayBeASecret checks that text that cannot begin a
// secret goes out at once, and what may waits only until it is decided.
func TestStreamRedactorHoldsOnlyWhatMayBeASecret(t *testing.T) {
	const key = "sk-abcdef123456"
	for _, tt := range []struct {
		name   string
		pieces []string
		want   []string // the output of each write, then of flush
	}{
		{"ordinary text", []string{"hello ", "world"}, []string{"hello ", "world", ""}},
		{"held then not a key", []string{"the s", "ky"}, []string{"the ", "sky", ""}},
		{"split key", []string{"a sk-ab", "cdef12", "3456 b"}, []string{"a ", "", "[REDACTED] b", ""}},
		{"key at the end", []string{"x ", "sk-abcdef", "123456"}, []string{"x ", "", "[REDACTED]", ""}},
		{"prefix at the end", []string{"ends with sk-a"}, []string{"ends with ", "sk-a"}},
		{"rune cut by the server", []string{"caf\xc3", "\xa9 ok"}, []string{"caf", "é ok", ""}},
		{"key twice in one piece", []string{key + key + "s"}, []string{"[REDACTED][REDACTED]", "s"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := streamAll(t, newRedactor([]string{key}), tt.pieces)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("outputs %q, want %q", got, tt.want)
			}
		})
	}
	// Without secrets only an unfinished UTF-8 sequence is held.
	sr := newRedactor([]string{"", ""}).stream()
	if got := sr.write("sk-ab"); got != "sk-ab" {
		t.Errorf("a redactor without secrets held back text: %q", got)
	}
	if a, b, c := sr.write("caf\xc3"), sr.write("\xa9"), sr.flush(); a != "caf" || b != "é" || c != "" {
		t.Errorf("a redactor without secrets cut a character: %q, %q, %q", a, b, c)
	}
}

// TestRedactorForms checks what counts as a secret: the exact string, short ones
// included, its base64 forms, and never the empty string.
func TestRedactorForms(t *testing.T) {
	const key = "sk-proj-Zx9??>>~~~Q" // '?', '>' and '~' give '+' and '/' in base64
	b64 := base64.StdEncoding.EncodeToString
	u64 := base64.URLEncoding.EncodeToString
	r := newRedactor([]string{key, "", "pw1", key})
	for _, tt := range []struct {
		name, text, want string
	}{
		{"exact", "key=" + key + ".", "key=[REDACTED]."},
		{"short secret", "password pw1!", "password [REDACTED]!"},
		{"base64", "token " + b64([]byte(key)), "token [REDACTED]"},
		{"base64 url", "token " + u64([]byte(key)), "token [REDACTED]"},
		{"unrelated base64", "token " + b64([]byte("sk-proj-other-key-000")), "token " + b64([]byte("sk-proj-other-key-000"))},
		{"empty text", "", ""},
	} {
		if got := r.clean(tt.text); got != tt.want {
			t.Errorf("%s: clean(%q) = %q, want %q", tt.name, tt.text, got, tt.want)
		}
	}
	// Inside a longer encoding, at any offset, the part made of the key alone goes.
	for _, pre := range []string{"u:", "us:", "use:"} {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding} {
			text := "Basic " + enc.EncodeToString([]byte(pre+key+"@host"))
			got := r.clean(text)
			if !strings.Contains(got, redacted) {
				t.Errorf("%q: the key encoded after %q was not found: %q", text, pre, got)
			}
			// At most two bytes of the key stay on each side of the marker.
			left, right, _ := strings.Cut(strings.TrimPrefix(got, "Basic "), redacted)
			if len(left) > 8 || len(right) > 12 {
				t.Errorf("%q: too much is left around the marker: %q", text, got)
			}
		}
	}
	if z := newRedactor([]string{""}); z.m != nil || z.clean("anything") != "anything" {
		t.Error("an empty secret matches")
	}
	if got := newRedactor(nil).stream().write("abc"); got != "abc" {
		t.Errorf("no secrets: %q", got)
	}
}

// BenchmarkStreamRedactor streams a long answer in 4-byte tokens through a redactor
// with two 51-byte keys (and their base64 forms).
func BenchmarkStreamRedactor(b *testing.B) {
	r := newRedactor([]string{"sk-proj-" + strings.Repeat("A1b2C3d4e5", 4) + "xyz", "sk-ant-api03-" + strings.Repeat("Q", 38)})
	text := strings.Repeat("Sure, here is the summary: sales kept steady, skies clear. ", 1000)
	var pieces []string
	for i := 0; i < len(text); i += 4 {
		pieces = append(pieces, text[i:min(i+4, len(text))])
	}
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		sr := r.stream()
		for _, p := range pieces {
			sr.write(p)
		}
		sr.flush()
	}
}
