package jailbreak

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Feature kinds, mixed into the hash so a word and a character n-gram spelling the same
// bytes are different features.
const (
	kindWord   = 'w'
	kindBigram = 'b'
	kindChar   = 'c'
	kindPunct  = 'p'
	kindTri    = 't'
	kindStart  = 's'
	kindSkip   = 'k'
)

// featureSet says which optional features tokenFeatures adds; it comes from the
// TrainConfig a model was trained with, so scoring extracts what training did.
type featureSet struct {
	// trigrams adds each word trigram.
	trigrams bool
	// skip adds skip-bigrams: each word paired with the words 2..skip+1 tokens before it.
	skip int
	// start marks the first start tokens of a text as features of their own ("the text
	// begins with DAN:"), since a jailbreak's framing is usually at the top.
	start int
	// maskNames reads every AI model or maker's name as maskedName (TrainConfig.MaskNames).
	maskNames bool
}

func (c TrainConfig) features() featureSet {
	return featureSet{trigrams: c.Trigrams, start: c.StartTokens, skip: c.SkipGrams, maskNames: c.MaskNames}
}

// maskedName is the word every AI model or maker's name is read as when names are
// masked; it holds a NUL, which no normalised text does, so no text can spell it.
const maskedName = "\x00name"

// word returns the text of token tk of t as the model reads it: the token itself, or
// maskedName for an AI model or maker's name when fs masks them.
func (fs featureSet) word(t string, tk token) string {
	if fs.maskNames && tk.aiName {
		return maskedName
	}
	return t[tk.start:tk.end]
}

// aiNames are the names (as normalised, lower-case words) of AI models, assistants and
// the companies that make them that the training file's jailbreaks address them by.
// Versions glued to a name ("gpt4o", "llama3") are matched by isAIName.
var aiNames = map[string]bool{
	"chatgpt": true, "gpt": true, "gpts": true, "openai": true, "claude": true, "anthropic": true,
	"gemini": true, "bard": true, "llama": true, "mistral": true, "mixtral": true,
	"copilot": true, "bing": true, "grok": true, "deepseek": true, "qwen": true, "midjourney": true,
	"dalle": true,
	// Not "palm", "davinci", "perplexity", "phi", "whisper": ordinary words first.
}

// isAIName reports whether the lower-case word w is an AI model or maker's name, alone or
// with a version glued to it ("gpt4", "gpt4o", "gpt35turbo", "claude3", "llama2").
func isAIName(w string) bool {
	if len(w) < 3 || len(w) > 24 {
		return false
	}
	switch w[0] { // the first letters of aiNames: most words are out at once
	case 'a', 'b', 'c', 'd', 'g', 'l', 'm', 'o', 'q':
	default:
		return false
	}
	if aiNames[w] {
		return true
	}
	for _, prefix := range [...]string{"chatgpt", "gpt", "claude", "llama", "gemini", "mistral"} {
		if rest, ok := strings.CutPrefix(w, prefix); ok && rest != "" && rest[0] >= '0' && rest[0] <= '9' {
			return true
		}
	}
	return false
}

// Character n-gram sizes taken from each word (with '<' and '>' marking its ends).
const (
	minGram = 3
	maxGram = 5
	// maxWordRunes caps the runes of a word that n-grams are taken from; longer "words"
	// (hashes, base64) add nothing but cost.
	maxWordRunes = 24
)

// token is one word or symbol of a view.
type token struct {
	start, end int // byte span in the view
	punct      bool
	// aiName is set for a word that names an AI model or maker (isAIName), found once
	// when the text is tokenized rather than at each feature that reads the word.
	aiName bool
}

// isCJK reports whether r is written without spaces between words, so each rune is its
// own token.
func isCJK(r rune) bool {
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Thai)
}

// tokenize splits a normalised text into words (letters, digits, apostrophes inside a
// word), single CJK runes and, when symbols is set, single symbols; spaces are dropped.
func tokenize(t string, toks []token, symbols bool) []token {
	toks, _ = nextTokens(t, 0, toks[:0], symbols, math.MaxInt)
	return toks
}

// nextTokens appends to toks the tokens of t from byte i, a token's start (or 0), until
// toks holds limit tokens or t ends, and returns it with the byte where it stopped. A
// token's extent never depends on what precedes it, so tokenizing from a token's start
// gives the tokens a whole-text tokenize gives from there.
func nextTokens(t string, i int, toks []token, symbols bool, limit int) ([]token, int) {
	for i < len(t) && len(toks) < limit {
		c := t[i]
		if c < utf8.RuneSelf {
			switch {
			case c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z':
				j := i + 1
				for j < len(t) {
					d := t[j]
					if d >= 'a' && d <= 'z' || d >= '0' && d <= '9' || d >= 'A' && d <= 'Z' {
						j++
						continue
					}
					if d == '\'' && j+1 < len(t) && t[j+1] >= 'a' && t[j+1] <= 'z' {
						j++
						continue
					}
					if d >= utf8.RuneSelf {
						r, n := utf8.DecodeRuneInString(t[j:])
						if (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r)) && !isCJK(r) {
							j += n
							continue
						}
					}
					break
				}
				toks = append(toks, token{start: i, end: j, aiName: isAIName(t[i:j])})
				i = j
			case c == ' ' || c == '\n' || c == '\t':
				i++
			default:
				if symbols {
					toks = append(toks, token{start: i, end: i + 1, punct: true})
				}
				i++
			}
			continue
		}
		r, n := utf8.DecodeRuneInString(t[i:])
		switch {
		case isCJK(r):
			toks = append(toks, token{start: i, end: i + n})
			i += n
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			j := i + n
			for j < len(t) {
				r2, n2 := utf8.DecodeRuneInString(t[j:])
				if r2 == utf8.RuneError && n2 <= 1 {
					break
				}
				if (unicode.IsLetter(r2) || unicode.IsDigit(r2) || unicode.Is(unicode.Mn, r2) || unicode.Is(unicode.Mc, r2)) && !isCJK(r2) {
					j += n2
					continue
				}
				break
			}
			toks = append(toks, token{start: i, end: j})
			i = j
		case unicode.IsSpace(r):
			i += n
		default:
			if symbols {
				toks = append(toks, token{start: i, end: i + n, punct: true})
			}
			i += n
		}
	}
	return toks, i
}

// FNV-1a, 32 bits.
const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

func hashByte(h uint32, b byte) uint32 { return (h ^ uint32(b)) * fnvPrime }

func hashString(h uint32, s string) uint32 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * fnvPrime
	}
	return h
}

// tokenFeatures appends to hs the features of token k of t: the word, the bigram with
// the token before it, and the word's character n-grams (a symbol gives one feature);
// and, as fs asks, the token's position when it opens the text (always first, so a
// Context model finds it at hs[0]), the trigram and the skip-bigrams ending at it.
// When names is not nil, the readable name of each feature whose hash is a key of names
// is stored there (for explanations).
func tokenFeatures(fs featureSet, t string, toks []token, k int, runes []int, hs []uint32, names map[uint32]string) ([]uint32, []int) {
	tk := toks[k]
	w := fs.word(t, tk)
	if k < fs.start {
		hs = append(hs, hashString(hashByte(hashByte(fnvOffset, kindStart), byte(k)), w))
		if names != nil {
			name(names, hs[len(hs)-1], fmt.Sprintf("token %d ", k+1), w)
		}
	}
	if fs.trigrams && k > 1 {
		p, q := toks[k-2], toks[k-1]
		pw, qw := fs.word(t, p), fs.word(t, q)
		h := hashString(hashByte(fnvOffset, kindTri), pw)
		h = hashString(hashByte(h, ' '), qw)
		hs = append(hs, hashString(hashByte(h, ' '), w))
		if names != nil {
			name(names, hs[len(hs)-1], "trigram ", pw+" "+qw+" "+w)
		}
	}
	for d := 2; d <= fs.skip+1 && k >= d; d++ {
		pw := fs.word(t, toks[k-d])
		h := hashString(hashByte(hashByte(fnvOffset, kindSkip), byte(d)), pw)
		hs = append(hs, hashString(hashByte(h, ' '), w))
		if names != nil {
			name(names, hs[len(hs)-1], fmt.Sprintf("skip-%d bigram ", d-1), pw+" … "+w)
		}
	}
	if tk.punct {
		hs = append(hs, hashString(hashByte(fnvOffset, kindPunct), w))
		name(names, hs[len(hs)-1], "symbol ", w)
		return hs, runes
	}
	hs = append(hs, hashString(hashByte(fnvOffset, kindWord), w))
	name(names, hs[len(hs)-1], "word ", w)
	if k > 0 {
		pw := fs.word(t, toks[k-1])
		h := hashString(hashByte(fnvOffset, kindBigram), pw)
		hs = append(hs, hashString(hashByte(h, ' '), w))
		if names != nil {
			// Guarded: the name's concatenation would otherwise allocate on every token
			// scored.
			name(names, hs[len(hs)-1], "bigram ", pw+" "+w)
		}
	}
	// Byte offsets into w where each rune of "<w>" starts; -1 stands for '<' and len(w)
	// for '>'. Words longer than maxWordRunes keep their tail as one last rune.
	runes = append(runes[:0], -1)
	for i := range w {
		if len(runes) > maxWordRunes {
			break
		}
		runes = append(runes, i)
	}
	runes = append(runes, len(w))
	nr := len(runes)
	if names == nil && minGram == 3 && maxGram == 5 {
		if len(w) <= maxWordRunes && isASCII(w) {
			return asciiGrams(w, hs), runes
		}
		return charGrams(w, runes, hs), runes
	}
	for n := minGram; n <= maxGram; n++ {
		for s := 0; s+n <= nr; s++ {
			from := runes[s]
			to := len(w) + 1 // end of '>'
			if s+n < nr {
				to = runes[s+n]
			}
			h := hashByte(hashByte(fnvOffset, kindChar), byte(n))
			if from < 0 {
				h = hashByte(h, '<')
				from = 0
			}
			end := min(to, len(w))
			h = hashString(h, w[from:end])
			if to > len(w) {
				h = hashByte(h, '>')
			}
			hs = append(hs, h)
			if _, ok := names[h]; ok && names != nil {
				g := ""
				if runes[s] < 0 {
					g = "<"
				}
				g += w[from:end]
				if to > len(w) {
					g += ">"
				}
				name(names, h, "chars ", g)
			}
		}
	}
	return hs, runes
}

// charGrams appends the character 3-, 4- and 5-grams of w (runes as tokenFeatures
// computes them), in the order tokenFeatures' loop over n and then start produces them.
// The grams of one start share their bytes, so they are hashed in one pass with three
// independent states.
func charGrams(w string, runes []int, hs []uint32) []uint32 {
	nr := len(runes)
	c3, c4, c5 := max(nr-2, 0), max(nr-3, 0), max(nr-4, 0)
	b3 := len(hs)
	b4, b5 := b3+c3, b3+c3+c4
	hs = slices.Grow(hs, c3+c4+c5)[:b5+c5]
	seed := hashByte(fnvOffset, kindChar)
	s3, s4, s5 := hashByte(seed, 3), hashByte(seed, 4), hashByte(seed, 5)
	// end returns the byte end in w of the gram of n runes at start s, and whether it
	// takes the closing '>'.
	end := func(s, n int) (int, bool) {
		if s+n < nr {
			return min(runes[s+n], len(w)), false
		}
		return len(w), true
	}
	for s := 0; s+3 <= nr; s++ {
		h3, h4, h5 := s3, s4, s5
		from := runes[s]
		if from < 0 {
			h3, h4, h5 = hashByte(h3, '<'), hashByte(h4, '<'), hashByte(h5, '<')
			from = 0
		}
		e3, x3 := end(s, 3)
		for ; from < e3; from++ {
			c := uint32(w[from])
			h3, h4, h5 = (h3^c)*fnvPrime, (h4^c)*fnvPrime, (h5^c)*fnvPrime
		}
		if x3 {
			h3 = hashByte(h3, '>')
		}
		hs[b3+s] = h3
		if s+4 > nr {
			continue
		}
		e4, x4 := end(s, 4)
		for ; from < e4; from++ {
			c := uint32(w[from])
			h4, h5 = (h4^c)*fnvPrime, (h5^c)*fnvPrime
		}
		if x4 {
			h4 = hashByte(h4, '>')
		}
		hs[b4+s] = h4
		if s+5 > nr {
			continue
		}
		e5, x5 := end(s, 5)
		for ; from < e5; from++ {
			h5 = (h5 ^ uint32(w[from])) * fnvPrime
		}
		if x5 {
			h5 = hashByte(h5, '>')
		}
		hs[b5+s] = h5
	}
	return hs
}

// asciiGrams is charGrams for an ASCII word of at most maxWordRunes bytes, whose runes
// are its bytes: the grams are the byte windows of "<w>".
func asciiGrams(w string, hs []uint32) []uint32 {
	var buf [maxWordRunes + 2]byte
	buf[0] = '<'
	copy(buf[1:], w)
	buf[len(w)+1] = '>'
	b := buf[:len(w)+2]
	nr := len(b)
	c3, c4, c5 := max(nr-2, 0), max(nr-3, 0), max(nr-4, 0)
	b3 := len(hs)
	b4, b5 := b3+c3, b3+c3+c4
	hs = slices.Grow(hs, c3+c4+c5)[:b5+c5]
	seed := hashByte(fnvOffset, kindChar)
	s3, s4, s5 := hashByte(seed, 3), hashByte(seed, 4), hashByte(seed, 5)
	for s := 0; s+3 <= nr; s++ {
		x0, x1, x2 := uint32(b[s]), uint32(b[s+1]), uint32(b[s+2])
		h3 := (((s3^x0)*fnvPrime^x1)*fnvPrime ^ x2) * fnvPrime
		hs[b3+s] = h3
		if s+4 > nr {
			continue
		}
		x3 := uint32(b[s+3])
		h4 := ((((s4^x0)*fnvPrime^x1)*fnvPrime^x2)*fnvPrime ^ x3) * fnvPrime
		hs[b4+s] = h4
		if s+5 > nr {
			continue
		}
		h5 := (((((s5^x0)*fnvPrime^x1)*fnvPrime^x2)*fnvPrime^x3)*fnvPrime ^ uint32(b[s+4])) * fnvPrime
		hs[b5+s] = h5
	}
	return hs
}

// name records the readable name of feature h when names asks for it.
func name(names map[uint32]string, h uint32, kind, s string) {
	if names == nil {
		return
	}
	if _, ok := names[h]; ok {
		names[h] = kind + quote(s)
	}
}

func quote(s string) string {
	return "\"" + strings.ReplaceAll(s, maskedName, "<AI name>") + "\""
}
