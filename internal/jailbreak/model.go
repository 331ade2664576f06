package jailbreak

import (
	"bytes"
	"compress/gzip"
	"context"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Preset names, from the fewest findings to the most.
const (
	PresetPermissive = "permissive"
	PresetDefault    = "default"
	PresetStrict     = "strict"
)

// Presets lists the preset names in order.
var Presets = []string{PresetPermissive, PresetDefault, PresetStrict}

// PresetFPR is the false-positive rate on benign text each preset's model threshold is
// calibrated to.
var PresetFPR = map[string]float64{PresetPermissive: 0.001, PresetDefault: 0.01, PresetStrict: 0.05}

// Model is a logistic regression over hashed features, scored over windows of tokens:
// a window's logit is Bias + Σ W[h] / √n over the n feature occurrences h of its tokens,
// and a text's score is the highest window probability, so an injection buried in a
// long document is scored on the window that holds it.
type Model struct {
	// Meta describes the model and how it was made.
	Meta ModelMeta
	// W holds 2^Meta.Bits weights.
	W []float32
	// Planted, when set, is the planted-instruction scorer run beside the model (a file
	// of its own: see planted.go); PlantedOutput, when set, the one that reads what a
	// program printed.
	Planted, PlantedOutput *PlantedModel
}

// ModelMeta is the JSON header of a model file.
type ModelMeta struct {
	// Bits of the feature hash: the model has 2^Bits weights.
	Bits int `json:"bits"`
	// Window and Stride are in tokens.
	Window int     `json:"window"`
	Stride int     `json:"stride"`
	Bias   float32 `json:"bias"`
	// Scale converts the stored int16 weights to float32.
	Scale float32 `json:"scale"`
	// Thresholds on the model's probability, per preset.
	Thresholds map[string]float64 `json:"thresholds"`
	// DataSHA256 is the sha256 of the training file; Rows how many rows it had.
	DataSHA256 string `json:"data_sha256"`
	Rows       int    `json:"rows"`
	// TrainConfig the model was trained with.
	Train TrainConfig `json:"train"`
}

// modelMagic starts a model file.
const modelMagic = "LIMITJB1"

// Marshal encodes m as a gzip-compressed file: magic, header length, JSON header, then
// the weights quantised to int16.
func (m *Model) Marshal() ([]byte, error) {
	meta := m.Meta
	meta.Scale = weightScale(m.W)
	return encodeWeights(modelMagic, meta, m.W, meta.Scale)
}

// weightScale is the step of the int16 quantisation of w.
func weightScale(w []float32) float32 {
	var maxAbs float32
	for _, x := range w {
		maxAbs = max(maxAbs, float32(math.Abs(float64(x))))
	}
	if maxAbs == 0 {
		return 1
	}
	return maxAbs / 32767
}

// encodeWeights writes a weights file (the window model's, the planted scorer's): magic,
// the header's length, the header as JSON, the weights in int16 steps of scale, gzipped.
func encodeWeights(magic string, meta any, w []float32, scale float32) ([]byte, error) {
	hdr, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("encode model header: %w", err)
	}
	var raw bytes.Buffer
	raw.WriteString(magic)
	_ = binary.Write(&raw, binary.LittleEndian, uint32(len(hdr)))
	raw.Write(hdr)
	q := make([]int16, len(w))
	for i, x := range w {
		q[i] = int16(math.Round(float64(x / scale)))
	}
	_ = binary.Write(&raw, binary.LittleEndian, q)
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestCompression)
	// A fixed header (no name, no time) keeps the file byte-for-byte reproducible.
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// decodeWeights reads a file encodeWeights wrote with magic into meta and returns its
// weights' raw bytes; what names the file in errors ("model file"), kind what it holds.
func decodeWeights(b []byte, magic, what, kind string, meta any) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if !bytes.HasPrefix(raw, []byte(magic)) || len(raw) < len(magic)+4 {
		return nil, fmt.Errorf("%s: not a %s (bad magic)", what, kind)
	}
	raw = raw[len(magic):]
	n := binary.LittleEndian.Uint32(raw)
	raw = raw[4:]
	if int(n) > len(raw) {
		return nil, fmt.Errorf("%s: truncated header", what)
	}
	if err := json.Unmarshal(raw[:n], meta); err != nil {
		return nil, fmt.Errorf("%s header: %w", what, err)
	}
	return raw[n:], nil
}

// decodeInt16 returns the weights of raw, 2^bits int16 in steps of scale.
func decodeInt16(raw []byte, bits int, scale float32, what string) ([]float32, error) {
	size := 1 << bits
	if len(raw) != 2*size {
		return nil, fmt.Errorf("%s: %d bytes of weights, want %d", what, len(raw), 2*size)
	}
	w := make([]float32, size)
	for i := range w {
		w[i] = float32(int16(binary.LittleEndian.Uint16(raw[2*i:]))) * scale
	}
	return w, nil
}

// UnmarshalModel decodes a model file written by Marshal.
func UnmarshalModel(b []byte) (*Model, error) {
	m := &Model{}
	raw, err := decodeWeights(b, modelMagic, "model file", "jailbreak model", &m.Meta)
	if err != nil {
		return nil, err
	}
	if m.Meta.Bits < 8 || m.Meta.Bits > 24 || m.Meta.Window < 1 || m.Meta.Stride < 1 || m.Meta.Stride > m.Meta.Window {
		return nil, fmt.Errorf("model file header: bad shape bits=%d window=%d stride=%d", m.Meta.Bits, m.Meta.Window, m.Meta.Stride)
	}
	if tr := m.Meta.Train; tr.StartTokens < 0 || tr.StartTokens > 256 || tr.SkipGrams < 0 || tr.SkipGrams > 8 {
		return nil, fmt.Errorf("model file header: bad features start_tokens=%d skip_grams=%d", tr.StartTokens, tr.SkipGrams)
	}
	if m.W, err = decodeInt16(raw, m.Meta.Bits, m.Meta.Scale, "model file"); err != nil {
		return nil, err
	}
	for _, p := range Presets {
		if _, ok := m.Meta.Thresholds[p]; !ok {
			return nil, fmt.Errorf("model file header: no threshold for preset %q", p)
		}
	}
	return m, nil
}

//go:embed model/jailbreak.model.gz
var embeddedModel []byte

var (
	defaultModelOnce sync.Once
	defaultModel     *Model
	defaultModelErr  error
)

// DefaultModel returns the trained model committed with this package.
func DefaultModel() (*Model, error) {
	defaultModelOnce.Do(func() {
		defaultModel, defaultModelErr = UnmarshalModel(embeddedModel)
		if defaultModelErr == nil {
			defaultModel.Planted, defaultModel.PlantedOutput, defaultModelErr = DefaultPlanted()
		}
	})
	return defaultModel, defaultModelErr
}

// scratch holds the buffers of one scoring, reused through a pool.
type scratch struct {
	toks  []token
	flat  []uint32  // every token's feature hashes, in order
	wts   []float32 // wts[i] is the weight of flat[i], so an explanation reads no weight again
	off   []int32   // token k's hashes are flat[off[k]:off[k+1]]
	runes []int
	sum   []float64 // prefix sums of weights per token
	lets  []int32   // lets[k] counts the tokens before k that hold a letter (MinLetters models)
	ctx   []float64 // prefix sums of the opening features (Context models)
	ctxHs []uint32  // a Context model's window features with the opening's, to explain
	ctxWs []float32 // their weights
	tab   sumTable  // feature sums of an explanation
	// A window's feature counts, for MaxRepeat and MinLetters models: slot j holds
	// feature keys[j], seen times[j] times, when stamp[j] == gen (see cappedSum).
	stamp []uint32
	keys  []uint32
	times []uint8
	gen   uint32
	// nctx is how many of the layout's first tokens open the text (Context models).
	nctx int
	// A scoring in blocks: the text's tokens of the rounds ahead, and its opening ones.
	buf, pre []token
}

var scratchPool = sync.Pool{New: func() any { return &scratch{} }}

// WindowScore is the model's verdict on a text: the best window's probability and span.
type WindowScore struct {
	// Prob is the highest window probability (0 for a text without tokens).
	Prob float64
	// Start and End are the best window's byte span in the scored text.
	Start, End int
	// Windows is how many windows were scored.
	Windows int
	// a and b are the best window's token range.
	a, b int
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// Score scores a normalised text (see Normalize).
func (m *Model) Score(t string) WindowScore {
	ws, s, _ := m.score(context.Background(), t)
	scratchPool.Put(s)
	return ws
}

// score scores t and returns the scratch holding its tokens and features; the caller
// puts it back in the pool. A scoring in blocks gives up between blocks once ctx ends.
func (m *Model) score(ctx context.Context, t string) (WindowScore, *scratch, error) {
	return m.scoreWith(ctx, scratchPool.Get().(*scratch), t)
}

// scoreWith is score in scratch s.
func (m *Model) scoreWith(ctx context.Context, s *scratch, t string) (WindowScore, *scratch, error) {
	var pos int
	s.toks, pos = nextTokens(t, 0, s.toks[:0], !m.Meta.Train.NoSymbols, m.block()+m.Meta.Window+1)
	if pos < len(t) {
		// More tokens may follow than a scoring holds at once.
		return m.scoreBlocks(ctx, t, s, pos)
	}
	m.fill(s, t, 0, 0)
	if len(s.toks) == 0 {
		return WindowScore{}, s, nil
	}
	best := WindowScore{Prob: -1}
	forWindows(len(s.toks), m.Meta.Window, m.Meta.Stride, func(a, b int) {
		best.Windows++
		m.window(s, &best, a, b, min(a, s.nctx))
	})
	if best.Prob < 0 {
		best.Prob = 0
	}
	return best, s, nil
}

// streamTokens is how many tokens' windows a scoring takes at once: a text with more
// tokens is scored in blocks over the same windows with the same features, holding the
// features of a block's tokens only, so a scoring's memory does not grow with the text
// (scored whole, a 10 MB text of spelled-out letters left 1.6 GB in use after its scan,
// most of it the pooled scratch's feature arrays). A variable for tests.
var streamTokens = 1 << 15

// block is streamTokens rounded to whole strides, and past the text's opening tokens and
// their lookbehind, so that only the first round's windows read the opening as it is.
func (m *Model) block() int {
	fs := m.Meta.Train.features()
	return max(streamTokens/m.Meta.Stride, (fs.start+fs.lookbehind())/m.Meta.Stride+1) * m.Meta.Stride
}

// lookbehind is how many tokens before a token its features read (bigram, trigram,
// skip-bigrams).
func (fs featureSet) lookbehind() int { return max(2, fs.skip+1) }

// fill computes the features of s.toks, a layout of tokens: those before full have theirs,
// those in [full, skip) none (they are there only as the neighbours the next tokens'
// features read), those from skip theirs; then the prefix sums, the opening's sums
// (Context models: the first features of the layout's first tokens) and the letter counts.
func (m *Model) fill(s *scratch, t string, full, skip int) {
	s.flat, s.wts, s.off, s.sum = s.flat[:0], s.wts[:0], s.off[:0], append(s.sum[:0], 0)
	mask := uint32(len(m.W) - 1)
	fs := m.Meta.Train.features()
	var acc float64
	for k := range s.toks {
		from := len(s.flat)
		s.off = append(s.off, int32(from))
		if k < full || k >= skip {
			s.flat, s.runes = tokenFeatures(fs, t, s.toks, k, s.runes, s.flat, nil)
			for _, h := range s.flat[from:] {
				w := m.W[h&mask]
				s.wts = append(s.wts, w)
				acc += float64(w)
			}
		}
		s.sum = append(s.sum, acc)
	}
	s.off = append(s.off, int32(len(s.flat)))
	// ctx[j] sums the weights of the opening features of tokens before j (the first
	// feature of each of the first StartTokens tokens), which Context models add to
	// every window that does not hold them itself.
	s.nctx = 0
	if m.Meta.Train.Context {
		s.nctx = min(fs.start, len(s.toks))
	}
	s.ctx = append(s.ctx[:0], 0)
	for k := 0; k < s.nctx; k++ {
		s.ctx = append(s.ctx, s.ctx[k]+float64(m.W[s.flat[s.off[k]]&mask]))
	}
	if m.Meta.Train.MinLetters > 0 {
		s.lets = append(s.lets[:0], 0)
		for _, tk := range s.toks {
			l := s.lets[len(s.lets)-1]
			if hasLetter(t[tk.start:tk.end]) {
				l++
			}
			s.lets = append(s.lets, l)
		}
	}
}

// window scores the layout's tokens [a, b) with the opening features of its first c
// tokens (see fill) and makes it best when it beats it.
func (m *Model) window(s *scratch, best *WindowScore, a, b, c int) bool {
	cnt := s.off[b] - s.off[a]
	if cnt == 0 {
		return false
	}
	mask := uint32(len(m.W) - 1)
	minLetters, repeat := m.Meta.Train.MinLetters, m.Meta.Train.MaxRepeat
	// A window mostly of numbers and symbols is judged on its words alone.
	words := minLetters > 0 && float64(s.lets[b]-s.lets[a]) < minLetters*float64(b-a)
	var sum float64
	if repeat > 0 || words {
		if sum, cnt = s.cappedSum(mask, repeat, words, a, b, c); cnt == 0 {
			return false
		}
	} else {
		sum = s.sum[b] - s.sum[a]
		if c > 0 {
			sum += s.ctx[c]
			cnt += int32(c)
		}
	}
	z := float64(m.Meta.Bias) + sum/math.Sqrt(float64(max(cnt, int32(m.Meta.Train.MinNorm))))
	if p := sigmoid(z); p > best.Prob {
		best.Prob, best.Start, best.End, best.a, best.b = p, s.toks[a].start, s.toks[b-1].end, a, b
		return true
	}
	return false
}

// scoreBlocks scores a text with more tokens than a block: s.toks holds its first tokens
// and pos is where they end. Each round takes the windows starting in the next block (and
// the text's last window) over a layout of the text's opening tokens (for the Context
// features and the "token k" ones, which only a text's first tokens have), the lookbehind
// of the block's first token and the block's tokens through its last window's end; the
// scratch returned holds the layout of the best window, as explain needs.
func (m *Model) scoreBlocks(ctx context.Context, t string, s *scratch, pos int) (WindowScore, *scratch, error) {
	W, S, B := m.Meta.Window, m.Meta.Stride, m.block()
	symbols := !m.Meta.Train.NoSymbols
	fs := m.Meta.Train.features()
	L, P := fs.lookbehind(), fs.start
	// buf holds the text's tokens from global index base.
	buf := append(s.buf[:0], s.toks...)
	pre := append(s.pre[:0], buf[:min(P, len(buf))]...)
	base, first, done := 0, 0, false
	best := WindowScore{Prob: -1}
	var bestA, bestB, bestFrom int // the best window's global tokens and where its lookbehind starts
	var wins [][2]int
	for finished := false; !finished; {
		if err := ctx.Err(); err != nil {
			s.buf, s.pre = buf[:0], pre[:0]
			return WindowScore{}, s, err
		}
		if !done {
			need := first + B + W + 1 - base
			if len(buf) < need {
				buf, pos = nextTokens(t, pos, buf, symbols, need)
			}
			done = len(buf) < need || pos >= len(t)
		}
		hi := base + len(buf) // the text's length in tokens once done
		wins = wins[:0]
		a := first
		for ; a < first+B; a += S {
			if a+W < hi {
				wins = append(wins, [2]int{a, a + W})
				continue
			}
			if done {
				wins = append(wins, [2]int{max(hi-W, 0), hi})
				finished = true
			}
			break
		}
		if len(wins) > 0 {
			// The layout: global tokens [from, to), after the opening's P and the L before
			// from. Starts grow but for the text's last window, which may start earlier.
			last := wins[len(wins)-1]
			from, to := min(wins[0][0], last[0]), last[1]
			rel := m.layout(s, t, pre, buf, base, from, to)
			for _, w := range wins {
				best.Windows++
				if m.window(s, &best, rel(w[0]), rel(w[1]), min(w[0], s.nctx)) {
					bestA, bestB, bestFrom = w[0], w[1], 0
					if w[0] >= len(pre)+L {
						bestFrom = s.toks[rel(w[0])-L].start
					}
				}
			}
		}
		first = a
		// Keep what the next round may read: the text's last window starts after first-S.
		if drop := first - S - L - base; drop > 0 {
			buf = append(buf[:0], buf[drop:]...)
			base += drop
		}
	}
	s.buf, s.pre = buf[:0], pre[:0]
	if best.Prob < 0 {
		best.Prob = 0
		return best, s, nil
	}
	// Lay out the best window again, for its explanation.
	var lb []token
	base = 0
	if bestA >= len(pre)+L {
		lb, _ = nextTokens(t, bestFrom, s.buf, symbols, L+bestB-bestA)
		base = bestA - L
	} else {
		lb, _ = nextTokens(t, 0, s.buf, symbols, bestB)
	}
	rel := m.layout(s, t, pre, lb, base, bestA, bestB)
	s.buf = lb[:0]
	best.a, best.b = rel(bestA), rel(bestB)
	return best, s, nil
}

// layout fills s with the tokens of global indices [from, to), taken from buf (which
// holds them from global index base): after the text's opening tokens pre and the
// lookbehind before from (without features) when from is past the opening, else the
// text's first tokens as they are. It returns the map from a global index to the layout's.
func (m *Model) layout(s *scratch, t string, pre, buf []token, base, from, to int) func(int) int {
	L := m.Meta.Train.features().lookbehind()
	if from < len(pre)+L {
		s.toks = append(s.toks[:0], buf[:to-base]...)
		m.fill(s, t, 0, 0)
		return func(g int) int { return g - base }
	}
	s.toks = append(append(s.toks[:0], pre...), buf[from-L-base:to-base]...)
	skip := len(pre) + L
	m.fill(s, t, len(pre), skip)
	return func(g int) int { return g - from + skip }
}

// hasLetter reports whether the token w holds a letter.
func hasLetter(w string) bool {
	for i := 0; i < len(w); i++ {
		if c := w[i]; c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			return true
		} else if c >= utf8.RuneSelf {
			for _, r := range w[i:] {
				if unicode.IsLetter(r) {
					return true
				}
			}
			return false
		}
	}
	return false
}

// cappedSum returns the summed weight and the number of the features of tokens [a, b)
// and of the opening features of the first c tokens, each feature counted at most repeat
// times (all of them when repeat is 0), and when words is set, only those of tokens that
// hold a letter (s.lets).
func (s *scratch) cappedSum(mask uint32, repeat int, words bool, a, b, c int) (float64, int32) {
	// The window's features are counted in a small open-addressing table, sized to them
	// (a table over every feature hash would not stay in cache) and emptied by a new
	// generation rather than cleared.
	size := 64
	for size < 2*(int(s.off[b]-s.off[a])+c) {
		size <<= 1
	}
	if size > len(s.stamp) {
		s.stamp, s.keys, s.times, s.gen = make([]uint32, size), make([]uint32, size), make([]uint8, size), 0
	}
	s.gen++
	if s.gen == 0 { // wrapped: forget every mark
		clear(s.stamp)
		s.gen = 1
	}
	tmask := uint32(size - 1)
	var sum float64
	var cnt int32
	count := func(i int32) {
		h := s.flat[i] & mask
		j := (h * 2654435761) & tmask
		for s.stamp[j] == s.gen && s.keys[j] != h {
			j = (j + 1) & tmask
		}
		if s.stamp[j] != s.gen {
			s.stamp[j], s.keys[j], s.times[j] = s.gen, h, 0
		}
		if repeat == 0 || int(s.times[j]) < repeat {
			s.times[j] = min(s.times[j]+1, 255)
			sum += float64(s.wts[i])
			cnt++
		}
	}
	token := func(k int) bool { return !words || s.lets[k+1] > s.lets[k] }
	for k := a; k < b; k++ {
		if token(k) {
			for i := s.off[k]; i < s.off[k+1]; i++ {
				count(i)
			}
		}
	}
	for k := 0; k < c; k++ {
		if token(k) {
			count(s.off[k])
		}
	}
	return sum, cnt
}

// forWindows calls f with the token ranges [a, b) of the windows over n tokens: one
// window when n ≤ window, else windows every stride tokens, the last one ending at n.
func forWindows(n, window, stride int, f func(a, b int)) {
	if n <= window {
		f(0, n)
		return
	}
	for a := 0; ; a += stride {
		if a+window >= n {
			f(n-window, n)
			return
		}
		f(a, a+window)
	}
}

// Contribution is one feature's share of a window's logit.
type Contribution struct {
	Feature string  `json:"feature"`
	Weight  float64 `json:"weight"`
}

// Explain returns the k features that pushed the window [start, end) of normalised text
// t the most towards "jailbreak", with their summed contributions to its logit.
func (m *Model) Explain(t string, start, end, k int) []Contribution {
	if start < 0 || end > len(t) || start >= end {
		return nil
	}
	s := scratchPool.Get().(*scratch)
	defer scratchPool.Put(s)
	all := tokenize(t, s.buf[:0], !m.Meta.Train.NoSymbols)
	defer func() { s.buf = all[:0] }()
	a, b := len(all), 0
	for i, tk := range all {
		if tk.start >= start && tk.end <= end {
			a, b = min(a, i), i+1
		}
	}
	if a >= b {
		return nil
	}
	// Laid out as a scoring in blocks would (the same features either way).
	pre := append(s.pre[:0], all[:min(m.Meta.Train.features().start, len(all))]...)
	s.pre = pre[:0]
	rel := m.layout(s, t, pre, all, 0, a, b)
	return m.explain(s, t, rel(a), rel(b), k)
}

// explain finds the top k features of tokens [a, b) of the scored text in s.
func (m *Model) explain(s *scratch, t string, a, b, k int) []Contribution {
	// A Context model's window also holds the text's opening features.
	nctx := 0
	if m.Meta.Train.Context {
		nctx = min(a, m.Meta.Train.StartTokens)
	}
	// The features the window was scored on: those of its words alone when it is mostly
	// numbers and symbols (MinLetters), then the opening's.
	minLetters, repeat := m.Meta.Train.MinLetters, m.Meta.Train.MaxRepeat
	words := minLetters > 0 && float64(s.lets[b]-s.lets[a]) < minLetters*float64(b-a)
	keep := func(k int) bool { return !words || s.lets[k+1] > s.lets[k] }
	hs, ws := s.ctxHs[:0], s.ctxWs[:0]
	for i := a; i < b; i++ {
		if keep(i) {
			hs = append(hs, s.flat[s.off[i]:s.off[i+1]]...)
			ws = append(ws, s.wts[s.off[i]:s.off[i+1]]...)
		}
	}
	for i := 0; i < nctx; i++ {
		if keep(i) {
			hs = append(hs, s.flat[s.off[i]])
			ws = append(ws, s.wts[s.off[i]])
		}
	}
	s.ctxHs, s.ctxWs = hs, ws
	if len(hs) == 0 {
		return nil
	}
	// Each feature hash's summed weight, in an open-addressing table (much cheaper than
	// a map here); names are made only for the winners.
	tab := s.tab.reset(len(hs))
	n := len(hs)
	if repeat > 0 || words {
		// Each feature at most repeat times, as the window was scored.
		for i, h := range hs {
			tab.addCapped(h, float64(ws[i]), repeat)
		}
		_, cnt := s.cappedSum(uint32(len(m.W)-1), repeat, words, a, b, nctx)
		n = int(cnt)
	} else {
		for i, h := range hs {
			tab.add(h, float64(ws[i]))
		}
	}
	type hw struct {
		h uint32
		w float64
	}
	// Keep the k largest positive sums, in order (k is small: insertion).
	var top []hw
	for _, i := range tab.slots {
		if tab.vals[i] <= 0 {
			continue
		}
		x := hw{tab.keys[i], tab.vals[i]}
		j := len(top)
		for j > 0 && (top[j-1].w < x.w || top[j-1].w == x.w && top[j-1].h > x.h) {
			j--
		}
		if j >= k {
			continue
		}
		top = append(top, hw{})
		copy(top[j+1:], top[j:])
		top[j] = x
		if len(top) > k {
			top = top[:k]
		}
	}
	names := make(map[uint32]string, len(top))
	var filter uint64 // bit h&63 of each top feature h: rules out most features at once
	for _, x := range top {
		names[x.h] = ""
		filter |= 1 << (x.h & 63)
	}
	var buf []uint32
	var runes []int
	fs := m.Meta.Train.features()
	for i := range b {
		if i >= nctx && i < a {
			continue
		}
		for _, h := range s.flat[s.off[i]:s.off[i+1]] {
			if filter&(1<<(h&63)) == 0 {
				continue
			}
			if _, ok := names[h]; ok {
				buf, runes = tokenFeatures(fs, t, s.toks, i, runes, buf[:0], names)
				break
			}
		}
	}
	norm := 1 / math.Sqrt(float64(max(n, m.Meta.Train.MinNorm)))
	out := make([]Contribution, 0, len(top))
	for _, x := range top {
		out = append(out, Contribution{Feature: names[x.h], Weight: x.w * norm})
	}
	return out
}

// sumTable sums float64 values by uint32 key with linear probing. It lives in a pooled
// scratch and is cleared slot by slot, so an explanation allocates nothing.
type sumTable struct {
	keys  []uint32
	vals  []float64
	used  []bool
	cnts  []uint8  // additions per slot, for addCapped
	slots []uint32 // used slots, in insertion order
	mask  uint32
}

// reset empties the table and sizes it for n insertions.
func (t *sumTable) reset(n int) *sumTable {
	for _, i := range t.slots {
		t.used[i], t.vals[i] = false, 0
	}
	t.slots = t.slots[:0]
	size := 64
	for size < 2*n {
		size <<= 1
	}
	if size > len(t.keys) {
		t.keys, t.vals, t.used, t.cnts = make([]uint32, size), make([]float64, size), make([]bool, size), make([]uint8, size)
	}
	t.mask = uint32(len(t.keys) - 1)
	return t
}

// addCapped adds v to k's value unless k was added max times already (its count kept
// in cnts); max 0 means no bound.
func (t *sumTable) addCapped(k uint32, v float64, max int) {
	i := (k * 2654435761) & t.mask
	for t.used[i] && t.keys[i] != k {
		i = (i + 1) & t.mask
	}
	if !t.used[i] {
		t.used[i], t.keys[i], t.cnts[i] = true, k, 0
		t.slots = append(t.slots, i)
	}
	if max == 0 || int(t.cnts[i]) < max {
		t.cnts[i] = min(t.cnts[i]+1, 255)
		t.vals[i] += v
	}
}

func (t *sumTable) add(k uint32, v float64) {
	i := (k * 2654435761) & t.mask
	for t.used[i] && t.keys[i] != k {
		i = (i + 1) & t.mask
	}
	if !t.used[i] {
		t.used[i], t.keys[i] = true, k
		t.slots = append(t.slots, i)
	}
	t.vals[i] += v
}

// FormatContributions renders contributions as `word "ignore" +0.41, ...`.
func FormatContributions(cs []Contribution) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s %+.2f", c.Feature, c.Weight)
	}
	return strings.Join(parts, ", ")
}
