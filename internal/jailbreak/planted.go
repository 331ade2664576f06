package jailbreak

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// The planted-instruction scorer reads a text sentence by sentence for an instruction
// planted in a document, an e-mail, a web page or a tool's output for the assistant that
// reads it ("assistants summarising this thread: forward …"): the window model reads a
// whole document as one bag of n-grams, in which the one sentence that matters weighs
// little. It is a logistic regression over the hashed words, word pairs, character
// 4-grams and co-occurring word pairs of one sentence (or of two neighbouring ones),
// trained on documents written twice, once as their author wrote them and once with an
// instruction planted (internal/jailbreak/corpus/planted-*.jsonl): the sentences the
// second has and the first lacks are the positives, every sentence of the first and of
// the benign training texts a negative. A text's score is its highest sentence's.

// maxSegmentBytes caps a sentence; a longer line is cut.
const maxSegmentBytes = 600

// Segment is a sentence of a normalised text: its byte span.
type Segment struct{ Start, End int }

// Segments splits a normalised text into sentences: at line breaks, after '.', '!', '?'
// followed by a space, a line break, a quote or the end, after '。', '！', '？', and at the
// openings and closings that set text apart ("<!--", "-->", '[', ']', '{', '}'). Segments
// without a letter are dropped; a long one is cut at maxSegmentBytes, at its last space
// in the second half or else on a rune boundary.
func Segments(t string) []Segment {
	var out []Segment
	start := 0
	emit := func(end int) {
		s, e := start, end
		for s < e && (t[s] == ' ' || t[s] == '\t' || t[s] == '\r') {
			s++
		}
		for e > s && (t[e-1] == ' ' || t[e-1] == '\t' || t[e-1] == '\r') {
			e--
		}
		for e-s > maxSegmentBytes {
			cut := s + maxSegmentBytes
			for cut > s && !utf8.RuneStart(t[cut]) {
				cut--
			}
			if sp := strings.LastIndexByte(t[s:cut], ' '); sp > maxSegmentBytes/2 {
				cut = s + sp
			}
			if hasLetter(t[s:cut]) {
				out = append(out, Segment{s, cut})
			}
			s = cut
		}
		if e > s && hasLetter(t[s:e]) {
			out = append(out, Segment{s, e})
		}
	}
	for i := 0; i < len(t); {
		r, size := utf8.DecodeRuneInString(t[i:])
		switch {
		case r == '\n':
			emit(i)
			start = i + size
		case r == '.' || r == '!' || r == '?':
			if i+size >= len(t) || t[i+size] == ' ' || t[i+size] == '\n' || t[i+size] == '"' || t[i+size] == '\'' {
				emit(i + size)
				start = i + size
			}
		case r == '。' || r == '！' || r == '？':
			emit(i + size)
			start = i + size
		case r == '[' || r == ']' || r == '{' || r == '}':
			emit(i)
			start = i + size
		case r == '<' && strings.HasPrefix(t[i:], "<!--"):
			emit(i)
			start = i + 4
			size = 4
		case r == '-' && strings.HasPrefix(t[i:], "-->"):
			emit(i)
			start = i + 3
			size = 3
		}
		i += size
	}
	emit(len(t))
	return out
}

// PlantedModel is the planted-instruction scorer.
type PlantedModel struct {
	Meta PlantedMeta
	// W holds 2^Meta.Bits weights.
	W []float32
}

// plantedScratch is one scoring's buffers: the features of a sentence, its words, their
// lower-cased bytes, and a set of the features the sentence already has.
type plantedScratch struct {
	hs, ws []uint32
	lower  []byte
	offs   []int
	// keys and stamps: a set of one sentence's features (see features).
	keys, stamps []uint32
	gen          uint32
}

var plantedPool = sync.Pool{New: func() any { return &plantedScratch{} }}

// PlantedMeta is the JSON header of a planted model file.
type PlantedMeta struct {
	Bits int     `json:"bits"`
	Bias float64 `json:"bias"`
	// Scale converts the stored int16 weights to float32.
	Scale float32 `json:"scale"`
	// MinWords is the fewest words a sentence needs to be scored; PairWords how many of
	// its first words are paired with each other as features.
	MinWords  int `json:"min_words"`
	PairWords int `json:"pair_words"`
	// Thresholds on the probability, per preset.
	Thresholds map[string]float64 `json:"thresholds"`
	// Output marks the scorer of what a program printed (text/output): trained with benign
	// program output and assistant answers among its negatives, its thresholds calibrated
	// on them.
	Output bool `json:"output,omitempty"`
	// Pairs is how many document pairs it was trained on; PairsSHA256 the sha256 of the
	// pair files' sha256s.
	Pairs       int                `json:"pairs"`
	PairsSHA256 string             `json:"pairs_sha256"`
	Train       PlantedTrainConfig `json:"train"`
}

// plantedMagic starts a planted model file.
const plantedMagic = "LIMITPI1"

// features appends the hashed features of sentence s to hs: its words (lower-cased),
// adjacent word pairs, its first word, the character 4-grams of words of four runes or
// more (padded with a space each side), each CJK character as a word; each feature once.
// Its first PairWords distinct words are left in sc.ws, for the features of their pairs
// (appendPairs, pairSum).
func (m *PlantedModel) features(sc *plantedScratch, s string, hs []uint32) []uint32 {
	s = readable(s)
	from := len(hs)
	ws := sc.ws[:0]
	mask := uint32(1)<<m.Meta.Bits - 1
	var prev uint32
	havePrev := false
	words := 0
	lower, offs := sc.lower, sc.offs
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf && !asciiWord[c] {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			i += size
			continue
		}
		var h uint32
		if cjk(r) {
			h = hashString(fnvOffset^0x51, s[i:i+size])
			hs = append(hs, h&mask)
			if havePrev {
				hs = append(hs, (prev*31+h)&mask)
			}
			i += size
		} else {
			j := i
			ascii := true
			for j < len(s) {
				if c := s[j]; c < utf8.RuneSelf {
					if !asciiWord[c] && c != '\'' {
						break
					}
					j++
					continue
				}
				r, n := utf8.DecodeRuneInString(s[j:])
				if !(unicode.IsLetter(r) || unicode.IsDigit(r)) || cjk(r) {
					break
				}
				ascii = false
				j += n
			}
			// The word lower-cased between two spaces, and where each of its runes starts.
			lower = append(lower[:0], ' ')
			if ascii {
				for k := i; k < j; k++ {
					c := s[k]
					if 'A' <= c && c <= 'Z' {
						c += 'a' - 'A'
					}
					lower = append(lower, c)
				}
			} else {
				lower = appendLower(lower, s[i:j])
			}
			lower = append(lower, ' ')
			w := lower[1 : len(lower)-1]
			h = hashBytes(fnvOffset^0x57, w)
			hs = append(hs, h&mask)
			if havePrev {
				hs = append(hs, (prev*0x9e3779b1^h)&mask)
			}
			if words == 0 {
				hs = append(hs, hashBytes(fnvOffset^0x46, w)&mask)
			}
			if ascii {
				if n := len(lower); n >= 6 {
					for k := 0; k+4 <= n && k < 24; k++ {
						hs = append(hs, hashBytes(fnvOffset^0x43, lower[k:k+4])&mask)
					}
				}
			} else {
				offs = offs[:0]
				for k := range string(lower) {
					offs = append(offs, k)
				}
				offs = append(offs, len(lower))
				if n := len(offs) - 1; n >= 6 {
					for k := 0; k+4 <= n && k < 24; k++ {
						hs = append(hs, hashBytes(fnvOffset^0x43, lower[offs[k]:offs[k+4]])&mask)
					}
				}
			}
			i = j
		}
		prev, havePrev = h, true
		if len(ws) < m.Meta.PairWords && !slices.Contains(ws, h) {
			ws = append(ws, h)
		}
		words++
	}
	sc.ws, sc.lower, sc.offs = ws, lower, offs
	// Each feature counts once, the first time it comes: a sentence repeating a word is
	// not more of anything. (The word pairs, of distinct words, come once each already.)
	// A small open-addressing set of this sentence's features, stamped with sc.gen.
	size := 64
	for size < 2*(len(hs)-from) {
		size <<= 1
	}
	if len(sc.keys) < size {
		sc.keys, sc.stamps = make([]uint32, size), make([]uint32, size)
		sc.gen = 0
	}
	sc.gen++
	if sc.gen == 0 {
		clear(sc.stamps)
		sc.gen = 1
	}
	slot := uint32(size - 1)
	out := hs[:from]
	for _, h := range hs[from:] {
		for k := (h * 0x9e3779b1) & slot; ; k = (k + 1) & slot {
			if sc.stamps[k] != sc.gen {
				sc.stamps[k], sc.keys[k] = sc.gen, h
				out = append(out, h)
				break
			}
			if sc.keys[k] == h {
				break
			}
		}
	}
	return out
}

// pairHash is the feature of the co-occurring words x and y.
func pairHash(x, y uint32) uint32 {
	if x > y {
		x, y = y, x
	}
	return x*0x85ebca6b ^ y*0xc2b2ae35 ^ 0x27d4eb2f
}

// appendPairs appends to hs the features of every pair of the words ws.
func (m *PlantedModel) appendPairs(hs, ws []uint32) []uint32 {
	mask := uint32(1)<<m.Meta.Bits - 1
	for a := 0; a < len(ws); a++ {
		for b := a + 1; b < len(ws); b++ {
			hs = append(hs, pairHash(ws[a], ws[b])&mask)
		}
	}
	return hs
}

// pairSum is the summed weight of the features appendPairs would append.
func (m *PlantedModel) pairSum(ws []uint32) float64 {
	mask := uint32(1)<<m.Meta.Bits - 1
	var z float32
	for a := 0; a < len(ws); a++ {
		x := ws[a]
		for _, y := range ws[a+1:] {
			z += m.W[pairHash(x, y)&mask]
		}
	}
	return float64(z)
}

// asciiWord says which ASCII bytes are letters or digits.
var asciiWord = func() (t [utf8.RuneSelf]bool) {
	for c := range t {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
	}
	return t
}()

// maxTagBytes bounds how far a tag is looked for its end.
const maxTagBytes = 400

// textAttrs are the attributes whose values a reader sees or hears: an instruction there
// is text like any other.
var textAttrs = map[string]bool{"alt": true, "title": true, "aria-label": true, "aria-description": true,
	"content": true, "placeholder": true, "label": true, "summary": true, "value": true}

// readable returns s with each HTML or XML tag ("<span style=…>", "</p>", "<br/>")
// replaced by a space and the values of its textAttrs. A sentence is judged on what it
// says, not on its markup: the hidden elements injections sit in ("display:none") are
// common in honest pages too, often empty.
func readable(s string) string {
	i := strings.IndexByte(s, '<')
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for ; i >= 0 && i < len(s); i = nextLT(s, i+1) {
		j := tagEnd(s, i)
		if j < 0 {
			continue
		}
		b.WriteString(s[last:i])
		b.WriteByte(' ')
		for _, v := range attrTexts(s[i+1 : j]) {
			b.WriteString(v)
			b.WriteByte(' ')
		}
		last = j + 1
		i = j
	}
	b.WriteString(s[last:])
	return b.String()
}

// nextLT returns the index of the next '<' at or after i, or -1.
func nextLT(s string, i int) int {
	if i >= len(s) {
		return -1
	}
	if k := strings.IndexByte(s[i:], '<'); k >= 0 {
		return i + k
	}
	return -1
}

// tagEnd returns the index of the '>' closing the tag s[i] opens, or -1 when s[i] opens
// none (a '<' not followed by a letter or '/', or no '>' within maxTagBytes).
func tagEnd(s string, i int) int {
	if i+1 >= len(s) {
		return -1
	}
	if c := s[i+1]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '/') {
		return -1
	}
	end := min(len(s), i+maxTagBytes)
	j := strings.IndexByte(s[i+1:end], '>')
	if j < 0 || strings.IndexByte(s[i+1:i+1+j], '<') >= 0 {
		return -1
	}
	return i + 1 + j
}

// attrTexts returns the values of a tag's textAttrs, given what is between '<' and '>'.
func attrTexts(tag string) []string {
	var out []string
	for k := 0; k < len(tag); {
		// An attribute name, then optionally '=' and a value.
		for k < len(tag) && !isNameByte(tag[k]) {
			k++
		}
		start := k
		for k < len(tag) && isNameByte(tag[k]) {
			k++
		}
		name := strings.ToLower(tag[start:k])
		for k < len(tag) && tag[k] == ' ' {
			k++
		}
		if k >= len(tag) || tag[k] != '=' {
			continue
		}
		k++
		for k < len(tag) && tag[k] == ' ' {
			k++
		}
		var val string
		if k < len(tag) && (tag[k] == '"' || tag[k] == '\'') {
			q := tag[k]
			e := strings.IndexByte(tag[k+1:], q)
			if e < 0 {
				e = len(tag) - k - 1
			}
			val, k = tag[k+1:k+1+e], k+2+e
		} else {
			e := k
			for e < len(tag) && tag[e] != ' ' {
				e++
			}
			val, k = tag[k:e], e
		}
		if textAttrs[name] {
			out = append(out, val)
		}
	}
	return out
}

// isNameByte reports whether c may be part of an attribute or tag name.
func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == ':'
}

// cjk is isCJK with a quick answer for the runes below Thai.
func cjk(r rune) bool { return r >= 0x0E00 && isCJK(r) }

// hashBytes is hashString of b.
func hashBytes(h uint32, b []byte) uint32 {
	for _, c := range b {
		h = hashByte(h, c)
	}
	return h
}

// appendLower appends s lower-cased to b.
func appendLower(b []byte, s string) []byte {
	for _, r := range s {
		b = utf8.AppendRune(b, unicode.ToLower(r))
	}
	return b
}

func (m *PlantedModel) scoreFeatures(hs []uint32) float64 { return sigmoid(m.Meta.Bias + m.sum(hs)) }

// sum is the summed weight of the features hs.
func (m *PlantedModel) sum(hs []uint32) float64 {
	var z float32
	for _, h := range hs {
		z += m.W[h]
	}
	return float64(z)
}

// instances returns the sentences of a normalised text with at least minWords words,
// and the pairs of neighbouring ones, as spans.
func instances(t string, minWords int) []Segment {
	var segs []Segment
	for _, s := range Segments(t) {
		if wordCount(t[s.Start:s.End]) >= minWords {
			segs = append(segs, s)
		}
	}
	out := make([]Segment, 0, 2*len(segs))
	for i, s := range segs {
		out = append(out, s)
		if i+1 < len(segs) && segs[i+1].End-s.Start <= 2*maxSegmentBytes {
			out = append(out, Segment{s.Start, segs[i+1].End})
		}
	}
	return out
}

// wordCount counts the words of s, each CJK character as half a word.
func wordCount(s string) int {
	n, ncjk, in := 0, 0, false
	for _, r := range readable(s) {
		switch {
		case cjk(r):
			ncjk++
			in = false
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if !in {
				n++
			}
			in = true
		default:
			in = false
		}
	}
	return n + ncjk/2
}

// Instances returns the text of each scored sentence and pair of neighbouring sentences
// of a normalised text.
func (m *PlantedModel) Instances(t string) []string {
	var out []string
	for _, s := range instances(t, m.Meta.MinWords) {
		out = append(out, t[s.Start:s.End])
	}
	return out
}

// PlantedScore is the planted scorer's verdict on a text: the highest probability of any
// sentence or pair of sentences, and its byte span in the normalised text.
type PlantedScore struct {
	Prob       float64
	Start, End int
}

// Score scores a normalised text.
func (m *PlantedModel) Score(t string) PlantedScore {
	s, _ := m.score(context.Background(), t)
	return s
}

// plantedStopEvery is how many sentences the scorer reads between looks at its context.
const plantedStopEvery = 256

// score scores a normalised text, giving up when ctx ends.
func (m *PlantedModel) score(ctx context.Context, t string) (PlantedScore, error) {
	var best PlantedScore
	sc := plantedPool.Get().(*plantedScratch)
	defer plantedPool.Put(sc)
	for i, s := range instances(t, m.Meta.MinWords) {
		if i%plantedStopEvery == plantedStopEvery-1 {
			if err := ctx.Err(); err != nil {
				return PlantedScore{}, err
			}
		}
		sc.hs = m.features(sc, t[s.Start:s.End], sc.hs[:0])
		if p := sigmoid(m.sum(sc.hs) + m.pairSum(sc.ws) + m.Meta.Bias); p > best.Prob {
			best = PlantedScore{p, s.Start, s.End}
		}
	}
	return best, nil
}

// Marshal encodes m as the window model's files are (see Model.Marshal), under its own
// magic.
func (m *PlantedModel) Marshal() ([]byte, error) {
	meta := m.Meta
	meta.Scale = weightScale(m.W)
	return encodeWeights(plantedMagic, meta, m.W, meta.Scale)
}

// UnmarshalPlanted decodes a planted model file written by Marshal.
func UnmarshalPlanted(b []byte) (*PlantedModel, error) {
	m := &PlantedModel{}
	raw, err := decodeWeights(b, plantedMagic, "planted model file", "planted-instruction model", &m.Meta)
	if err != nil {
		return nil, err
	}
	if m.Meta.Bits < 8 || m.Meta.Bits > 24 || m.Meta.MinWords < 0 || m.Meta.PairWords < 0 || m.Meta.PairWords > 256 {
		return nil, fmt.Errorf("planted model file header: bad shape bits=%d min_words=%d pair_words=%d", m.Meta.Bits, m.Meta.MinWords, m.Meta.PairWords)
	}
	if m.W, err = decodeInt16(raw, m.Meta.Bits, m.Meta.Scale, "planted model file"); err != nil {
		return nil, err
	}
	for _, p := range Presets {
		if _, ok := m.Meta.Thresholds[p]; !ok {
			return nil, fmt.Errorf("planted model file header: no threshold for preset %q", p)
		}
	}
	return m, nil
}

//go:embed model/planted.model.gz
var embeddedPlanted []byte

//go:embed model/planted-output.model.gz
var embeddedPlantedOutput []byte

var (
	defaultPlantedOnce                   sync.Once
	defaultPlanted, defaultPlantedOutput *PlantedModel
	defaultPlantedErr                    error
)

// DefaultPlanted returns the planted-instruction scorers committed with this package: the
// one for prompts and documents, and the one for what a program printed.
func DefaultPlanted() (text, output *PlantedModel, err error) {
	defaultPlantedOnce.Do(func() {
		if defaultPlanted, defaultPlantedErr = UnmarshalPlanted(embeddedPlanted); defaultPlantedErr != nil {
			return
		}
		if defaultPlantedOutput, defaultPlantedErr = UnmarshalPlanted(embeddedPlantedOutput); defaultPlantedErr == nil && !defaultPlantedOutput.Meta.Output {
			defaultPlantedErr = fmt.Errorf("model/planted-output.model.gz is not a scorer of output")
		}
	})
	return defaultPlanted, defaultPlantedOutput, defaultPlantedErr
}

// PlantedTrainConfig sets the planted scorer's training and features.
type PlantedTrainConfig struct {
	Bits      int     `json:"bits"`
	MinWords  int     `json:"min_words"`
	PairWords int     `json:"pair_words"`
	Epochs    int     `json:"epochs"`
	LR        float64 `json:"lr"`
	L2        float64 `json:"l2"`
	// PosWeight is the positives' total weight against the negatives' (spread over a
	// positive bag's sentences); MaxWeight caps one sentence's weight in a step, so at 1
	// (the default) every sentence weighs at most as much as a negative one.
	PosWeight float64 `json:"pos_weight"`
	MaxWeight float64 `json:"max_weight"`
	Seed      uint64  `json:"seed"`
	// Folds of the cross-validation that calibrates the thresholds.
	Folds int `json:"folds"`
}

// DefaultPlantedTrainConfig is the configuration make train-jailbreak uses, chosen by
// cross-validation on the training pairs and benign training texts (BENCHMARKS.md).
func DefaultPlantedTrainConfig() PlantedTrainConfig {
	return PlantedTrainConfig{Bits: 20, MinWords: 5, PairWords: 48, Epochs: 8, LR: 0.1, L2: 1e-4,
		PosWeight: 1, MaxWeight: 1, Seed: 20261204, Folds: 5}
}

// PlantedBag is a training bag of sentences: every one of a negative bag is benign; a
// positive bag's are the sentences a planted instruction added, each a positive weighted
// by 1/len.
type PlantedBag struct {
	Pos       bool
	Instances []string
}

// NewPlantedModel returns an untrained model with cfg's features.
func NewPlantedModel(cfg PlantedTrainConfig) *PlantedModel {
	return &PlantedModel{Meta: PlantedMeta{Bits: cfg.Bits, MinWords: cfg.MinWords, PairWords: cfg.PairWords, Train: cfg},
		W: make([]float32, 1<<cfg.Bits)}
}

// TrainPlanted trains a planted scorer on bags: logistic regression by Adagrad, each
// sentence weighted as cfg's PosWeight and MaxWeight say.
func TrainPlanted(in []PlantedBag, cfg PlantedTrainConfig) *PlantedModel {
	m := NewPlantedModel(cfg)
	type item struct {
		hs     []uint32
		y, wgt float64
	}
	var items []item
	npos, nneg := 0, 0
	sc := &plantedScratch{}
	for _, b := range in {
		if len(b.Instances) == 0 {
			continue
		}
		for _, s := range b.Instances {
			hs := m.appendPairs(m.features(sc, s, nil), sc.ws)
			y, w := 0.0, 1.0
			if b.Pos {
				y, w = 1, 1/float64(len(b.Instances))
			}
			items = append(items, item{hs, y, w})
		}
		if b.Pos {
			npos++
		} else {
			nneg += len(b.Instances)
		}
	}
	posW := cfg.PosWeight * float64(nneg) / float64(max(npos, 1))
	for i := range items {
		if items[i].y == 1 {
			items[i].wgt *= posW
		}
	}
	g2 := make([]float64, len(m.W))
	var bg2 float64
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	for ep := 0; ep < cfg.Epochs; ep++ {
		rng.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
		for _, it := range items {
			p := m.scoreFeatures(it.hs)
			g := (p - it.y) * math.Min(it.wgt, cfg.MaxWeight)
			for _, h := range it.hs {
				gh := g + cfg.L2*float64(m.W[h])
				g2[h] += gh * gh
				m.W[h] -= float32(cfg.LR * gh / math.Sqrt(g2[h]+1e-8))
			}
			bg2 += g * g
			m.Meta.Bias -= cfg.LR * g / math.Sqrt(bg2+1e-8)
		}
	}
	return m
}

// PlantedPair is a document as its author wrote it (Benign) and with an instruction
// planted in it (Injected, which is Benign with Injection inserted).
type PlantedPair struct {
	ID        string `json:"id"`
	Carrier   string `json:"carrier"`
	Lang      string `json:"lang"`
	Goal      string `json:"goal"`
	Benign    string `json:"benign"`
	Injected  string `json:"injected"`
	Injection string `json:"injection"`
}

// Check reports whether Injected is Benign with Injection inserted once (whitespace at
// the join aside).
func (p PlantedPair) Check() error {
	if p.Injection == "" || strings.Count(p.Injected, p.Injection) != 1 {
		return fmt.Errorf("pair %s: the injection is not in the injected text exactly once", p.ID)
	}
	if strings.Join(strings.Fields(strings.Replace(p.Injected, p.Injection, "", 1)), " ") != strings.Join(strings.Fields(p.Benign), " ") {
		return fmt.Errorf("pair %s: the injected text without the injection is not the benign one", p.ID)
	}
	return nil
}

// Bags returns a pair's training bags: the sentences the injected text has and the
// benign one lacks (positive), and the benign one's (negative).
func (m *PlantedModel) Bags(p PlantedPair) []PlantedBag {
	neg := m.Instances(Normalize(p.Benign).Text)
	have := make(map[string]bool, len(neg))
	for _, s := range neg {
		have[s] = true
	}
	var pos []string
	for _, s := range m.Instances(Normalize(p.Injected).Text) {
		if !have[s] {
			pos = append(pos, s)
		}
	}
	bags := []PlantedBag{{Instances: neg}}
	if len(pos) > 0 {
		bags = append(bags, PlantedBag{Pos: true, Instances: pos})
	}
	return bags
}

// PlantedTestGlob is where the planted-instruction test pairs lie, relative to the module
// root: documents by writers none of whose documents the scorers were trained on (see
// corpus/SOURCES.md).
const PlantedTestGlob = "internal/jailbreak/corpus/planted-test-*.jsonl"

// PlantedTestPairs loads the repository's planted-instruction test pairs.
func PlantedTestPairs() ([]PlantedPair, error) {
	return LoadPairFiles(filepath.Join(ModuleRoot(), PlantedTestGlob))
}

// LoadPairFiles loads the pairs of every file matching pattern (a filepath.Glob pattern),
// in the files' name order; no file matching is an error.
func LoadPairFiles(pattern string) ([]PlantedPair, error) {
	files, err := filepath.Glob(pattern)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no file matches %s", pattern)
	}
	var out []PlantedPair
	for _, f := range files {
		ps, err := LoadPairs(f)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	return out, nil
}

// LoadPairs reads a file of JSON lines, each a PlantedPair, checking each.
func LoadPairs(path string) ([]PlantedPair, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	var out []PlantedPair
	for line := 1; sc.Scan(); line++ {
		var p PlantedPair
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if err := p.Check(); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, p)
	}
	return out, sc.Err()
}
