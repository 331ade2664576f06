// Package jailbreak is the detector behind the limit-governance-jailbreak plugin: text
// normalisation, decoders for embedded payloads, multilingual phrase rules, a small
// linear model over hashed word and character n-grams scanned in windows, and the code
// that trains, calibrates and evaluates that model. Everything is pure Go and usable
// in-process, so benchmarks and the training command measure exactly what the plugin runs.
package jailbreak

import (
	"context"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// View is a transformed copy of a text together with a map from each of its bytes back
// to the byte offset in the original text it came from, so a match in the view can be
// reported as a span of the original.
type View struct {
	// Text is the transformed text.
	Text string
	// Orig[i] is the byte offset in the original of Text[i]; Orig[len(Text)] is the end
	// of the last original byte that contributed to Text.
	Orig []int32
}

// Span maps the view's byte range [start, end) to the original's byte range.
func (v View) Span(start, end int) (int, int) {
	if len(v.Orig) == 0 {
		return 0, 0
	}
	if start > len(v.Text) {
		start = len(v.Text)
	}
	if end > len(v.Text) {
		end = len(v.Text)
	}
	s := int(v.Orig[start])
	e := int(v.Orig[end])
	if end > start && end < len(v.Orig) {
		// The original end is where the next view byte starts, unless that byte came from
		// the same original rune (a decomposition); then take the last byte's rune end.
		if last := int(v.Orig[end-1]); e <= last {
			e = last + 1
		}
	}
	if e < s {
		e = s
	}
	return s, e
}

// builder accumulates a view.
type builder struct {
	b    []byte
	orig []int32
}

func (w *builder) rune(r rune, at int) {
	n := len(w.b)
	w.b = utf8.AppendRune(w.b, r)
	for i := n; i < len(w.b); i++ {
		w.orig = append(w.orig, int32(at))
	}
}

// ascii appends the normalised form of the ASCII byte c at offset at, or counts it as
// removed.
func (w *builder) ascii(c byte, at int, out *Normalized) {
	switch {
	case c >= 'A' && c <= 'Z':
		w.b = append(w.b, c+'a'-'A')
	case c == '\r':
		w.b = append(w.b, '\n')
	case c == '\n' || c == '\t' || c >= 0x20 && c != 0x7f:
		w.b = append(w.b, c)
	default:
		out.Removed++
		return
	}
	w.orig = append(w.orig, int32(at))
}

func (w *builder) done(end int) View {
	w.orig = append(w.orig, int32(end))
	return View{Text: string(w.b), Orig: w.orig}
}

// invisible reports whether r is dropped by normalisation: zero-width and other format
// characters, controls other than line breaks and tabs, variation selectors and the
// Unicode tag block (whose printable part Normalize returns separately as a hidden payload).
func invisible(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case r < 0x20 || (r >= 0x7f && r < 0xa0):
		return true
	case r == 0xad || r == 0x34f || r == 0x180e: // soft hyphen, combining grapheme joiner, Mongolian vowel separator
		return true
	case r >= 0xfe00 && r <= 0xfe0f, r >= 0xe0100 && r <= 0xe01ef: // variation selectors
		return true
	case r >= 0xe0000 && r <= 0xe007f: // tags
		return true
	}
	return unicode.Is(unicode.Cf, r)
}

// latinFold maps accented Latin letters to their base letter (é → e), computed once from
// the canonical decomposition of Latin-1 Supplement and Latin Extended-A/B, and a few
// other characters that read as Latin letters.
var latinFold = func() map[rune]rune {
	m := map[rune]rune{}
	for _, rg := range [][2]rune{{0xc0, 0x24f}, {0x1e00, 0x1eff}} {
		for r := rg[0]; r <= rg[1]; r++ {
			d := []rune(norm.NFD.String(string(r)))
			if len(d) > 1 && d[0] < 0x80 && unicode.IsLetter(d[0]) {
				m[r] = unicode.ToLower(d[0])
			}
		}
	}
	// Letters without a decomposition that readers take for a Latin letter.
	for k, v := range map[rune]rune{'ß': 's', 'ø': 'o', 'đ': 'd', 'ł': 'l', 'ı': 'i', 'ħ': 'h', 'ŀ': 'l'} {
		m[k] = v
	}
	// Small capitals ("Sʏsᴛᴇᴍ ᴜᴘᴅᴀᴛᴇ"), which NFKC leaves alone, and the regional
	// indicator symbols that spell words as flags ("🇭🇴🇼 🇹🇴").
	for i, r := range []rune("ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘꞯʀꜱᴛᴜᴠᴡxʏᴢ") {
		if r != 'x' {
			m[r] = 'a' + rune(i)
		}
	}
	for r := rune(0x1f1e6); r <= 0x1f1ff; r++ {
		m[r] = 'a' + r - 0x1f1e6
	}
	return m
}()

// confusable maps Cyrillic and Greek letters that look like Latin ones to those letters;
// applied only inside words that also contain Latin letters ("іgnоre" with Cyrillic і, о).
var confusable = map[rune]rune{
	'а': 'a', 'в': 'b', 'е': 'e', 'ё': 'e', 'к': 'k', 'м': 'm', 'н': 'h', 'о': 'o', 'р': 'p', 'с': 'c',
	'т': 't', 'у': 'y', 'х': 'x', 'і': 'i', 'ї': 'i', 'ј': 'j', 'ѕ': 's', 'ԁ': 'd', 'ɡ': 'g', 'ԛ': 'q', 'ԝ': 'w',
	'α': 'a', 'β': 'b', 'ε': 'e', 'η': 'n', 'ι': 'i', 'κ': 'k', 'ν': 'v', 'ο': 'o', 'ρ': 'p', 'τ': 't',
	'υ': 'u', 'χ': 'x', 'ω': 'w',
}

// maxExpansion is the most bytes NFKC may make of one byte of a character; characters
// whose compatibility form is longer (U+FDFA is 18 Arabic letters, U+3316 six katakana)
// are kept as written: none is a Latin letter or digit, and a flood of them made NFKC
// and every later stage several times slower than plain text.
const maxExpansion = 3

// nextExpander returns the offset of the first character of s at or after i whose NFKC
// form is more than maxExpansion times its size, or len(s).
func nextExpander(s string, i int) int {
	for i < len(s) {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		p := norm.NFKC.PropertiesString(s[i:])
		n := max(p.Size(), 1)
		if len(p.Decomposition()) > maxExpansion*n {
			return i
		}
		i += n
	}
	return len(s)
}

// Normalized is the result of Normalize.
type Normalized struct {
	// View is the normalised text: NFKC, lower case, invisible characters removed, Latin
	// diacritics removed, look-alike letters in mixed-script words mapped to Latin, every
	// kind of space and line break folded to ' ' or '\n'.
	View
	// Hidden is ASCII text smuggled in Unicode tag characters (U+E0020–U+E007E), and
	// HiddenStart/HiddenEnd its span in the original; empty when there is none.
	Hidden                 string
	HiddenStart, HiddenEnd int
	// Removed counts invisible characters dropped (excluding tags).
	Removed int
}

// Normalize returns the normalised view of s. It works one NFKC segment at a time so
// every byte of the result maps back to the original.
func Normalize(s string) Normalized {
	out, _ := normalize(&stopper{ctx: context.Background()}, s)
	return out
}

// stopEvery is how many bytes of a text a long loop goes through between looks at its
// context (see stopper): 0.2–6 ms of work here (prose to CJK and spelled-out letters), so
// that a scan given up stops within a few ms, for a look that costs tens of ns.
const stopEvery = 1 << 16

// stopper tells a long loop over a text when to give up: its at method looks at ctx once
// every stopEvery bytes of the loop's progress, and err then holds why it ended.
type stopper struct {
	ctx  context.Context
	next int
	err  error
}

// at reports whether the loop, now at byte i, must give up.
func (st *stopper) at(i int) bool {
	if st.err != nil {
		return true
	}
	if i < st.next {
		return false
	}
	st.next = i + stopEvery
	st.err = st.ctx.Err()
	return st.err != nil
}

// normalize is Normalize that gives up, with st.err, when st says to.
func normalize(st *stopper, s string) (Normalized, error) {
	var out Normalized
	w := builder{b: make([]byte, 0, len(s)), orig: make([]int32, 0, len(s)+1)}
	var hidden []byte
	var it norm.Iter
	var buf [64]byte
	// NFKC runs on the text between characters that expand too much; those are kept.
	for base := 0; base < len(s); {
		end := nextExpander(s, base)
		for base < end {
			if st.at(base) {
				return Normalized{}, st.err
			}
			// ASCII followed by ASCII is a segment of its own that NFKC leaves as it is:
			// copy it without the iterator, which is then run on the rest up to the next
			// such byte. A run longer than stopEvery is copied a part at a time.
			part := min(end, base+stopEvery)
			for base < part && s[base] < utf8.RuneSelf && (base+1 == end || s[base+1] < utf8.RuneSelf) {
				c := s[base]
				if c >= 'a' && c <= 'z' || c >= ' ' && c < 'A' {
					// The common bytes, kept as they are.
					w.b = append(w.b, c)
					w.orig = append(w.orig, int32(base))
				} else {
					w.ascii(c, base, &out)
				}
				base++
			}
			if base == end {
				break
			}
			if base == part {
				continue // more of the run, after a look at the context
			}
			// The iterator stops before an ASCII byte followed by ASCII, and never right
			// after an invalid or cut sequence, which it reads differently at the end of
			// its input than before more text.
			k := base + 1
			for k < end && (s[k] >= utf8.RuneSelf || k+1 < end && s[k+1] >= utf8.RuneSelf || !endsValid(s[base:k])) {
				k++
			}
			it.InitString(norm.NFKC, s[base:k])
			if base = normalizeSpan(st, &it, base, &w, &out, &hidden, &buf); st.err != nil {
				return Normalized{}, st.err
			}
		}
		if end < len(s) {
			r, n := utf8.DecodeRuneInString(s[end:])
			w.rune(unicode.ToLower(r), end)
			base = end + n
		}
	}
	out.View = w.done(len(s))
	out.Hidden = string(hidden)
	out.View = foldConfusables(out.View)
	return out, nil
}

// endsValid reports whether s ends with a valid UTF-8 encoded rune.
func endsValid(s string) bool {
	r, n := utf8.DecodeLastRuneInString(s)
	return r != utf8.RuneError || n > 1
}

// normalizeSpan appends what it yields to w; base is the offset in the original text
// of its start. It returns the offset where it ended, early when st says to give up.
func normalizeSpan(st *stopper, it *norm.Iter, base int, w *builder, out *Normalized, hidden *[]byte, buf *[64]byte) int {
	for !it.Done() {
		at := base + it.Pos()
		if st.at(at) {
			return at
		}
		seg := it.Next()
		if len(seg) == 1 && seg[0] < utf8.RuneSelf {
			// Fast path: one ASCII byte.
			w.ascii(seg[0], at, out)
			continue
		}
		seg = append(buf[:0], seg...)
		for len(seg) > 0 {
			r, n := utf8.DecodeRune(seg)
			seg = seg[n:]
			if r >= 0xe0020 && r <= 0xe007e {
				if *hidden == nil {
					out.HiddenStart = at
				}
				*hidden = append(*hidden, byte(r-0xe0000))
				out.HiddenEnd = base + it.Pos()
				continue
			}
			if invisible(r) {
				if r < 0xe0000 || r > 0xe007f {
					out.Removed++
				}
				continue
			}
			switch {
			case unicode.IsSpace(r):
				if r == '\u2028' || r == '\u2029' || r == '\u0085' {
					r = '\n'
				} else {
					r = ' '
				}
			default:
				r = unicode.ToLower(r)
				if f, ok := latinFold[r]; ok {
					r = f
				} else if unicode.Is(unicode.Mn, r) && len(w.b) > 0 && w.b[len(w.b)-1] < utf8.RuneSelf {
					// A combining mark on an ASCII letter (e + U+0301): drop it.
					continue
				}
			}
			w.rune(r, at)
		}
	}
	return base + it.Pos()
}

// foldConfusables maps Cyrillic and Greek look-alikes to Latin letters inside words that
// mix them with Latin letters. Words written wholly in Cyrillic or Greek are left alone.
func foldConfusables(v View) View {
	t := v.Text
	needs := false
	for i := 0; i < len(t); i++ {
		if t[i] >= 0xce && t[i] <= 0xd4 {
			needs = true
			break
		}
	}
	if !needs {
		return v
	}
	w := builder{b: make([]byte, 0, len(t)), orig: make([]int32, 0, len(t)+1)}
	i := 0
	for i < len(t) {
		// Find the next word.
		j := i
		for j < len(t) {
			r, n := utf8.DecodeRuneInString(t[j:])
			if !unicode.IsLetter(r) {
				break
			}
			j += n
		}
		if j == i {
			r, n := utf8.DecodeRuneInString(t[i:])
			w.b = append(w.b, t[i:i+n]...)
			w.orig = append(w.orig, v.Orig[i:i+n]...)
			_ = r
			i += n
			continue
		}
		word := t[i:j]
		latin, other := false, false
		for _, r := range word {
			if r < 0x80 {
				latin = true
			} else if _, ok := confusable[r]; ok {
				other = true
			}
		}
		if latin && other {
			for k, r := range word {
				if f, ok := confusable[r]; ok {
					w.rune(f, int(v.Orig[i+k]))
				} else {
					w.rune(r, int(v.Orig[i+k]))
				}
			}
		} else {
			w.b = append(w.b, word...)
			w.orig = append(w.orig, v.Orig[i:j]...)
		}
		i = j
	}
	return w.done(int(v.Orig[len(t)]))
}

// leet maps the digits and symbols used as letters to those letters.
// '9' and '6' stand for 'g' ("i9nore", "6uidelines"); as for the others, digits are
// folded only in words that mix them with letters (or in a text written in leetspeak), so
// numbers stay numbers.
var leet = [128]byte{'0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '6': 'g', '7': 't', '8': 'b', '9': 'g', '@': 'a', '$': 's', '!': 'i', '|': 'i', '+': 't'}

// LeetView folds leetspeak in v ("1gn0r3 4ll" → "ignore aii"): within words that mix
// letters with digits or symbols used as letters, those are mapped to letters; every
// 'l' becomes 'i' (so "1" read as either matches), and letters spelled out one at a time
// ("i g n o r e", "i.g.n.o.r.e") are joined. Phrase rules run on it compiled the same way
// (see foldPattern). ok is false when nothing but l→i changed, so the caller can skip it.
//
// In a text written in leetspeak (at least denseLeetWords such words), short tokens are
// folded too: "5h0w m3 y0ur 5y573m pr0mp7" has "m3" for "me", and "45 4n" for "as an".
func LeetView(v View) (out View, ok bool) {
	out, ok, _ = leetViewStop(&stopper{ctx: context.Background()}, v)
	return out, ok
}

// leetViewStop is LeetView that gives up, with st.err, when st says to.
func leetViewStop(st *stopper, v View) (out View, ok bool, err error) {
	t := v.Text
	dense := denseLeet(t)
	w := builder{b: make([]byte, 0, len(t)), orig: make([]int32, 0, len(t)+1)}
	i := 0
	for i < len(t) {
		if st.at(i) {
			return View{}, false, st.err
		}
		c := t[i]
		if !isLeetWordByte(c) {
			w.b = append(w.b, c)
			w.orig = append(w.orig, v.Orig[i])
			i++
			continue
		}
		j, letters, leets := leetWord(t, i)
		// Single letters separated by single spaces are handled above; here a word.
		if j-i == 1 && i+2 < len(t) && isSep(t[i+1]) && t[i+2] >= 'a' && t[i+2] <= 'z' {
			if n := spelledOut(st, t, i, &w, v.Orig); n > 0 {
				ok = true
				i += n
				continue
			}
		}
		fold := letters > 0 && leets > 0 && letters+leets >= 3 || dense && leets > 0 && (letters > 0 || j-i <= 3)
		for k := i; k < j; k++ {
			c := t[k]
			if fold && c < 128 && leet[c] != 0 {
				c = leet[c]
				ok = true
			}
			w.b = append(w.b, foldLI(c))
			w.orig = append(w.orig, v.Orig[k])
		}
		i = j
	}
	if st.err != nil {
		return View{}, false, st.err // given up in a run of spelled-out letters
	}
	return w.done(int(v.Orig[len(t)])), ok, nil
}

// leetWord returns the end of the word of leet-word bytes starting at t[i], and how many
// of them are letters and how many are not.
func leetWord(t string, i int) (j, letters, leets int) {
	for j = i; j < len(t) && isLeetWordByte(t[j]); j++ {
		if t[j] >= 'a' && t[j] <= 'z' {
			letters++
		} else {
			leets++
		}
	}
	return j, letters, leets
}

// denseLeetWords is how many words mixing letters with leet bytes (three bytes or more)
// make a text leetspeak, whose short tokens LeetView then folds as well.
const denseLeetWords = 3

// denseLeet reports whether t has at least denseLeetWords words that LeetView folds.
func denseLeet(t string) bool {
	n, i := 0, 0
	for i < len(t) {
		if !isLeetWordByte(t[i]) {
			i++
			continue
		}
		j, letters, leets := leetWord(t, i)
		if letters > 0 && leets > 0 && letters+leets >= 3 {
			if n++; n >= denseLeetWords {
				return true
			}
		}
		i = j
	}
	return false
}

// leetChanges reports whether LeetView would report ok for a view of t, walking t as it
// does without building the view, so a caller that drops views without leetspeak can
// skip building them.
func leetChanges(t string) bool {
	i := 0
	for i < len(t) {
		if !isLeetWordByte(t[i]) {
			i++
			continue
		}
		j, letters, leets := leetWord(t, i)
		if j-i == 1 && i+2 < len(t) && isSep(t[i+1]) && t[i+2] >= 'a' && t[i+2] <= 'z' {
			if spelledOut(nil, t, i, nil, nil) > 0 {
				return true
			}
		}
		if letters > 0 && leets > 0 && letters+leets >= 3 {
			return true // a folded word has a leet byte
		}
		i = j
	}
	return false
}

func foldLI(c byte) byte {
	if c == 'l' {
		return 'i'
	}
	return c
}

func isLeetWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c < 128 && leet[c] != 0
}

func isSep(c byte) bool { return c == ' ' || c == '.' || c == '-' || c == '_' || c == '*' }

// spelledOut recognises at least four single letters at t[i:] each followed by one
// separator ("i g n o r e"); it returns the bytes consumed (excluding the final
// separator) and appends the letters, 'l' folded to 'i', to w, each mapped back through
// orig. A double separator, or a separator other than the one between the run's first
// letters ("i.g.n.o.r.e a.l.l"), stands for the space between words and is kept as one
// space. With w nil it only tells whether there is such a run (a positive
// count, not the bytes consumed). It returns 0, w as it was, when there is none, or when
// st says to give up (st.err; a run may be the whole text).
//
// The letters go to w as they are read, not to a buffer of their own first: a text of
// spelled-out letters is one run, and the buffer of 10 MB of them was 400 MB allocated.
func spelledOut(st *stopper, t string, i int, w *builder, orig []int32) int {
	if t[i] < 'a' || t[i] > 'z' || (i > 0 && isLeetWordByte(t[i-1])) {
		return 0
	}
	probe := w == nil
	var mark int
	if !probe {
		mark = len(w.b)
	}
	letters := 0
	j, end := i, i
	// sep is the separator between the letters of a word ("i.g.n.o.r.e"); another one
	// between two letters ("i.g.n.o.r.e a.l.l") is the space between words.
	var sep byte
	for {
		if j >= len(t) || !(t[j] >= 'a' && t[j] <= 'z' || t[j] < 128 && leet[t[j]] != 0) {
			break
		}
		if j+1 < len(t) && isLeetWordByte(t[j+1]) {
			break // not a single letter
		}
		c := t[j]
		if c < 'a' || c > 'z' {
			c = leet[c]
		}
		letters++
		if probe {
			if letters >= 4 {
				return 1
			}
		} else {
			w.b = append(w.b, foldLI(c))
			w.orig = append(w.orig, orig[j])
			if st != nil && st.at(j) {
				break
			}
		}
		j++
		end = j
		if j+1 < len(t) && isSep(t[j]) && isLeetWordByte(t[j+1]) {
			if sep == 0 {
				sep = t[j]
			} else if t[j] != sep && !probe {
				w.b = append(w.b, ' ')
				w.orig = append(w.orig, orig[j])
			}
			j++
			continue
		}
		if j+2 < len(t) && isSep(t[j]) && isSep(t[j+1]) && isLeetWordByte(t[j+2]) && (j+3 >= len(t) || !isLeetWordByte(t[j+3])) {
			// Word gap: keep one space and go on.
			if !probe {
				w.b = append(w.b, ' ')
				w.orig = append(w.orig, orig[j])
			}
			j += 2
			continue
		}
		break
	}
	if probe {
		return 0
	}
	if letters < 4 || st != nil && st.err != nil {
		w.b, w.orig = w.b[:mark], w.orig[:mark]
		return 0
	}
	// Drop a trailing word gap.
	if len(w.b) > mark && w.b[len(w.b)-1] == ' ' {
		w.b, w.orig = w.b[:len(w.b)-1], w.orig[:len(w.orig)-1]
	}
	return end - i
}

// Rot13 returns v with ASCII letters rotated by 13 (byte-for-byte, so Orig is shared).
func Rot13(v View) View {
	var b strings.Builder
	b.Grow(len(v.Text))
	for i := 0; i < len(v.Text); i++ {
		b.WriteByte(rot13[v.Text[i]])
	}
	return View{Text: b.String(), Orig: v.Orig}
}

// rot13 maps each byte to its ROT13 rotation (bytes other than ASCII letters to themselves).
var rot13 = func() (t [256]byte) {
	for i := range t {
		c := byte(i)
		switch {
		case c >= 'a' && c <= 'z':
			c = 'a' + (c-'a'+13)%26
		case c >= 'A' && c <= 'Z':
			c = 'A' + (c-'A'+13)%26
		}
		t[i] = c
	}
	return t
}()

// lineOf returns the 1-based line of byte offset off in s.
func lineOf(s string, off int) int {
	if off > len(s) {
		off = len(s)
	}
	return strings.Count(s[:off], "\n") + 1
}

// reversedHints are words of the phrase rules written backwards ("erongi" for "ignore"):
// a text is read reversed only when it holds one, so ordinary text costs a few searches.
var reversedHints = []string{"erongi", "dragersid", "tegrof", "snoitcurtsni", "tpmorp metsys", "senilediug"}

// reversed is a text read backwards, rune by rune, with the offset in the text each of
// its bytes came from.
type reversed struct {
	Text string
	from []int32
}

// reverseView returns t read backwards when it holds a reversed hint
// ("snoitcurtsni suoiverp lla erongi").
func reverseView(t string) (reversed, bool) {
	hint := false
	for _, h := range reversedHints {
		if strings.Contains(t, h) {
			hint = true
			break
		}
	}
	if !hint {
		return reversed{}, false
	}
	b := make([]byte, 0, len(t))
	from := make([]int32, 0, len(t))
	for i := len(t); i > 0; {
		_, size := utf8.DecodeLastRuneInString(t[:i])
		i -= size
		b = append(b, t[i:i+size]...)
		for k := range size {
			from = append(from, int32(i+k))
		}
	}
	return reversed{Text: string(b), from: from}, true
}

// span maps the reversed text's byte range [start, end) to t's.
func (r reversed) span(start, end int) (int, int) {
	if end <= start || end > len(r.from) {
		return 0, 0
	}
	lo, hi := r.from[start], r.from[start]
	for _, o := range r.from[start:end] {
		lo, hi = min(lo, o), max(hi, o)
	}
	return int(lo), int(hi) + 1
}
