package jailbreak

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
)

// Labels of the data sets.
const (
	LabelJailbreak = "jailbreak"
	LabelBenign    = "benign"
)

// Example is one labelled text.
type Example struct {
	Text  string `json:"text"`
	Label string `json:"label"`
	// Category groups hand-written test prompts ("indirect-email", "benign-risky", ...).
	Category string `json:"category,omitempty"`
	Source   string `json:"source,omitempty"`
}

// Positive reports whether the example is labelled jailbreak.
func (e Example) Positive() bool { return e.Label == LabelJailbreak }

// LoadJSONL reads a file of JSON lines {"text", "label", ...} (gzip-compressed when its
// name ends in .gz) and returns its examples and the file's sha256. Every label must be
// "jailbreak" or "benign".
func LoadJSONL(path string) ([]Example, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("read data set: %w", err)
	}
	sum := sha256.Sum256(b)
	var r io.Reader = bytes.NewReader(b)
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, "", fmt.Errorf("read %s: %w", path, err)
		}
		r = zr
	}
	var out []Example
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e Example
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, "", fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if e.Label != LabelJailbreak && e.Label != LabelBenign {
			return nil, "", fmt.Errorf("%s:%d: label %q, want %q or %q", path, line, e.Label, LabelJailbreak, LabelBenign)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, "", fmt.Errorf("read %s: %w", path, err)
	}
	return out, hex.EncodeToString(sum[:]), nil
}

// TrainingDataRel is where the training file lies relative to the module root (the
// repository is cloned beside a copy of shared/).
const TrainingDataRel = "../shared/data/governance/prompts-train.jsonl"

// TrainingDataSHA256 is the sha256 of the training file the committed model was trained
// on (its SOURCES.md gives the same).
const TrainingDataSHA256 = "f8051cf1d920a8677b3e66bb432c80ebd2d2d6d9ee72b9aed38ae27af9e0f20b"

// ModuleRoot returns the module's root directory (where go.mod is), found from this
// source file's location.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Split divides examples deterministically into a training part and a held-out part of
// about heldOut (e.g. 0.2) of each label: within each label, examples are ordered by the
// sha256 of their text and every one whose rank falls in the first heldOut share is
// held out. The split depends only on the texts, not on the file's order.
func Split(ex []Example, heldOut float64) (train, test []Example) {
	type keyed struct {
		key string
		e   Example
	}
	byLabel := map[string][]keyed{}
	for _, e := range ex {
		h := sha256.Sum256([]byte(e.Text))
		byLabel[e.Label] = append(byLabel[e.Label], keyed{hex.EncodeToString(h[:]), e})
	}
	for _, label := range []string{LabelBenign, LabelJailbreak} {
		ks := byLabel[label]
		sort.Slice(ks, func(i, j int) bool { return ks[i].key < ks[j].key })
		cut := int(math.Round(heldOut * float64(len(ks))))
		for i, k := range ks {
			if i < cut {
				test = append(test, k.e)
			} else {
				train = append(train, k.e)
			}
		}
	}
	return train, test
}

// TrainConfig holds the training hyper-parameters; with the same data they determine
// the model bit for bit.
type TrainConfig struct {
	Bits   int     `json:"bits"`
	Window int     `json:"window"`
	Stride int     `json:"stride"`
	Epochs int     `json:"epochs"`
	Seed   uint64  `json:"seed"`
	LR     float64 `json:"lr"`
	L2     float64 `json:"l2"`
	// Folds of the cross-validation whose out-of-fold scores calibrate the thresholds.
	Folds int `json:"folds"`
	// NoSymbols leaves punctuation and other symbols out of the features.
	NoSymbols bool `json:"no_symbols,omitempty"`
	// MIL trains as multiple-instance learning: after the first epoch, a jailbreak text
	// longer than one window contributes only its highest-scoring window (the one the
	// detector's max over windows will look at), with the text's whole weight.
	MIL bool `json:"mil,omitempty"`
	// MinNorm damps short windows: a window's feature sum is divided by
	// √max(n, MinNorm) instead of √n, so a handful of features cannot decide alone.
	MinNorm int `json:"min_norm,omitempty"`
	// Trigrams adds word trigrams to the features.
	Trigrams bool `json:"trigrams,omitempty"`
	// StartTokens marks the first StartTokens tokens of a text as features of their own.
	StartTokens int `json:"start_tokens,omitempty"`
	// Context adds the opening features of the text (see StartTokens) to every window,
	// so a window deep in a long text is read knowing how the text began ("summarise the
	// following article:").
	Context bool `json:"context,omitempty"`
	// SkipGrams adds word pairs with 1..SkipGrams tokens between them.
	SkipGrams int `json:"skip_grams,omitempty"`
	// MaskNames reads the names of AI models, assistants and their makers (GPT-4,
	// ChatGPT, OpenAI, Claude, Gemini, Llama…) as one and the same placeholder word. The
	// training file's jailbreaks name ChatGPT in half their texts and its benign prompts
	// almost never do, so a model trained on it learns the name itself as a sign of
	// attack, and flags every user of an AI platform who asks about GPT-4. Masked, it
	// learns what is said to the model, not which model is addressed.
	MaskNames bool `json:"mask_names,omitempty"`
	// BenignWeight multiplies the weight of benign texts in the loss (1 when zero).
	BenignWeight float64 `json:"benign_weight,omitempty"`
	// Average returns the average of the weights over the steps of the second half of
	// the epochs (averaged SGD) rather than the last weights.
	Average bool `json:"average,omitempty"`
	// MaxRepeat counts each feature at most MaxRepeat times per window (0: no bound; 1:
	// a window is the set of its features), so repeating something (a line of "=", a
	// list of zeros, a sentence printed a hundred times) cannot multiply its weight:
	// a window's logit grows at most √MaxRepeat-fold with repetition.
	MaxRepeat int `json:"max_repeat,omitempty"`
	// MinLetters is the least share of a window's tokens that must hold a letter for the
	// model to read the whole window: the model knows prompts, written in words, and what
	// it would say of numbers and symbols (a table, a list of zeros, a progress bar)
	// means nothing. A window below it is read as its words alone, so that padding with
	// numbers hides no words from the model.
	MinLetters float64 `json:"min_letters,omitempty"`
	// NB, when above zero, scales each feature by its naive-Bayes log-count ratio
	// log((p_h/‖p‖₁) / (q_h/‖q‖₁)), where p_h and q_h are the summed weights of the
	// jailbreak and of the benign training windows holding feature h, each smoothed by NB
	// (the NB-SVM of Wang and Manning, 2012, with logistic loss). A feature seen mostly in
	// one class enters the regression large and with its sign, one seen in both or rarely
	// enters small: a prior that suits a few thousand texts over a million hashed
	// features. The ratios are multiplied into the stored weights, so a model is scored
	// as any other.
	NB float64 `json:"nb,omitempty"`
}

// DefaultTrainConfig is what `make train-jailbreak` uses. It was chosen by the
// out-of-fold true-positive rate at 1 % false positives on the training split only
// (`go run ./internal/cmd/train-jailbreak -tune`); the held-out split is never looked at.
func DefaultTrainConfig() TrainConfig {
	return TrainConfig{Bits: 20, Window: 256, Stride: 128, Epochs: 20, Seed: 20261201, LR: 0.1, L2: 1e-5, Folds: 5,
		Trigrams: true, SkipGrams: 2, StartTokens: 8, Context: true, MaxRepeat: 1, MinLetters: 0.5, NB: 5, MaskNames: true}
}

// sample is one training window: its feature hashes (with repeats), label and weight.
type sample struct {
	hs     []uint32
	y      float64
	weight float64
	doc    int
}

// samples turns examples into training windows; each example's windows share a total
// weight of 1, so long texts count as much as short ones.
func samples(ex []Example, cfg TrainConfig) []sample {
	var out []sample
	var toks []token
	var runes []int
	mask := uint32(1<<cfg.Bits - 1)
	for di, e := range ex {
		t := Normalize(e.Text).Text
		toks = tokenize(t, toks, !cfg.NoSymbols)
		if len(toks) == 0 {
			continue
		}
		per := make([][]uint32, len(toks))
		for k := range toks {
			var hs []uint32
			hs, runes = tokenFeatures(cfg.features(), t, toks, k, runes, nil, nil)
			for i := range hs {
				hs[i] &= mask
			}
			per[k] = hs
		}
		var wins [][2]int
		forWindows(len(toks), cfg.Window, cfg.Stride, func(a, b int) { wins = append(wins, [2]int{a, b}) })
		y, dw := 0.0, 1.0
		if e.Positive() {
			y = 1
		} else if cfg.BenignWeight > 0 {
			dw = cfg.BenignWeight
		}
		letter := make([]bool, len(toks))
		for k, tk := range toks {
			letter[k] = cfg.MinLetters > 0 && hasLetter(t[tk.start:tk.end])
		}
		for _, w := range wins {
			// A window mostly of numbers and symbols is its words alone (see MinLetters).
			words := 0
			for k := w[0]; k < w[1]; k++ {
				if letter[k] {
					words++
				}
			}
			onlyWords := cfg.MinLetters > 0 && float64(words) < cfg.MinLetters*float64(w[1]-w[0])
			var hs []uint32
			for k := w[0]; k < w[1]; k++ {
				if !onlyWords || letter[k] {
					hs = append(hs, per[k]...)
				}
			}
			if cfg.Context {
				for k := 0; k < min(w[0], cfg.StartTokens); k++ {
					if !onlyWords || letter[k] {
						hs = append(hs, per[k][0])
					}
				}
			}
			if cfg.MaxRepeat > 0 {
				hs = capRepeats(hs, cfg.MaxRepeat)
			}
			if len(hs) == 0 {
				continue
			}
			out = append(out, sample{hs: hs, y: y, weight: dw / float64(len(wins)), doc: di})
		}
	}
	return out
}

// capRepeats keeps at most max of each hash in hs (in sorted order).
func capRepeats(hs []uint32, max int) []uint32 {
	slices.Sort(hs)
	out := hs[:0]
	for i, h := range hs {
		if i >= max && hs[i-max] == h {
			continue
		}
		out = append(out, h)
	}
	return out
}

// Train fits the model on ex with Adagrad-scaled stochastic gradient descent on the
// weighted logistic loss, in an order shuffled from cfg.Seed. Thresholds are left empty
// (see Calibrate).
func Train(ex []Example, cfg TrainConfig) *Model {
	ss := samples(ex, cfg)
	// x[h] is feature h's value in every window holding it: 1, or its ratio (NB).
	var x []float64
	if cfg.NB > 0 {
		x = nbRatios(ss, cfg.Bits, cfg.NB)
	}
	val := func(h uint32) float64 {
		if x == nil {
			return 1
		}
		return x[h]
	}
	w := make([]float64, 1<<cfg.Bits)
	g2 := make([]float64, 1<<cfg.Bits)
	var bias, gb2 float64
	order := make([]int, len(ss))
	for i := range order {
		order[i] = i
	}
	const eps = 1e-8
	logit := func(s sample) float64 {
		scale := 1 / math.Sqrt(float64(max(len(s.hs), cfg.MinNorm)))
		z := bias
		for _, h := range s.hs {
			z += w[h] * scale * val(h)
		}
		return z
	}
	// Averaged SGD over the second half of the epochs, kept lazily: acc[h] sums w[h]
	// over the steps since averaging began, brought up to date (from last[h]) just
	// before w[h] changes.
	var acc []float64
	var last []int64
	var accB float64
	var step, from int64
	averaging := false
	touch := func(h uint32) {
		if averaging {
			acc[h] += w[h] * float64(step-last[h])
			last[h] = step
		}
	}
	for epoch := 0; epoch < cfg.Epochs; epoch++ {
		if cfg.Average && !averaging && epoch >= cfg.Epochs/2 {
			averaging, from = true, step
			acc, last = make([]float64, len(w)), make([]int64, len(w))
			for i := range last {
				last[i] = step
			}
		}
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(epoch)))
		if cfg.MIL && epoch > 0 {
			// Keep every window of benign texts and single-window texts, and the best
			// window of each longer jailbreak text.
			order = order[:0]
			for i := 0; i < len(ss); {
				j := i
				for j < len(ss) && ss[j].doc == ss[i].doc {
					j++
				}
				if ss[i].y == 0 || j-i == 1 {
					for k := i; k < j; k++ {
						order = append(order, k)
					}
				} else {
					best, bz := i, math.Inf(-1)
					for k := i; k < j; k++ {
						if z := logit(ss[k]); z > bz {
							best, bz = k, z
						}
					}
					order = append(order, -1-best) // negative: use with the text's whole weight
				}
				i = j
			}
		}
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			whole := i < 0
			if whole {
				i = -1 - i
			}
			s := ss[i]
			if whole {
				s.weight = 1
			}
			if len(s.hs) == 0 {
				continue
			}
			scale := 1 / math.Sqrt(float64(max(len(s.hs), cfg.MinNorm)))
			z := bias
			for _, h := range s.hs {
				z += w[h] * scale * val(h)
			}
			g := (sigmoid(z) - s.y) * s.weight
			if averaging {
				accB += bias
			}
			step++
			for _, h := range s.hs {
				touch(h)
				gh := g*scale*val(h) + cfg.L2*w[h]
				g2[h] += gh * gh
				w[h] -= cfg.LR * gh / math.Sqrt(g2[h]+eps)
			}
			gb2 += g * g
			bias -= cfg.LR * g / math.Sqrt(gb2+eps)
		}
	}
	if averaging && step > from {
		n := float64(step - from)
		for h := range w {
			touch(uint32(h))
			w[h] = acc[h] / n
		}
		bias = accB / n
	}
	m := &Model{Meta: ModelMeta{Bits: cfg.Bits, Window: cfg.Window, Stride: cfg.Stride, Bias: float32(bias), Train: cfg,
		Thresholds: map[string]float64{}}, W: make([]float32, len(w))}
	for i, v := range w {
		m.W[i] = float32(v * val(uint32(i)))
	}
	return m
}

// nbRatios returns each of the 2^bits features' naive-Bayes log-count ratio over the
// training windows (see TrainConfig.NB): a window counts once per feature it holds, with
// its weight, and every count is smoothed by alpha.
func nbRatios(ss []sample, bits int, alpha float64) []float64 {
	n := 1 << bits
	p, q := make([]float64, n), make([]float64, n)
	seen := make([]int, n) // seen[h] is 1 + the last window that counted h
	for i, s := range ss {
		c := q
		if s.y == 1 {
			c = p
		}
		for _, h := range s.hs {
			if seen[h] != i+1 {
				seen[h] = i + 1
				c[h] += s.weight
			}
		}
	}
	var sp, sq float64
	for h := range p {
		p[h] += alpha
		q[h] += alpha
		sp += p[h]
		sq += q[h]
	}
	r := make([]float64, n)
	for h := range r {
		r[h] = math.Log(p[h]/sp) - math.Log(q[h]/sq)
	}
	return r
}

// ModelScores returns the model's probability for each example's normalised text.
func ModelScores(m *Model, ex []Example) []float64 {
	out := make([]float64, len(ex))
	for i, e := range ex {
		out[i] = m.Score(Normalize(e.Text).Text).Prob
	}
	return out
}

// OutOfFold returns each example's score from a model trained without the fold holding
// it (folds assigned round-robin in the examples' order).
func OutOfFold(ex []Example, cfg TrainConfig) []float64 { return OutOfFoldWith(ex, nil, cfg) }

// OutOfFoldWith is OutOfFold with extra examples in every fold's training, never scored.
func OutOfFoldWith(ex, extra []Example, cfg TrainConfig) []float64 {
	out := make([]float64, len(ex))
	for f := 0; f < cfg.Folds; f++ {
		var tr, te []Example
		var idx []int
		for i, e := range ex {
			if i%cfg.Folds == f {
				te = append(te, e)
				idx = append(idx, i)
			} else {
				tr = append(tr, e)
			}
		}
		m := Train(append(tr, extra...), cfg)
		for j, s := range ModelScores(m, te) {
			out[idx[j]] = s
		}
	}
	return out
}

// ThresholdAtFPR returns the threshold that lets through at most fpr of the benign
// scores: halfway between the k-th and (k+1)-th highest, k = ⌊fpr·n⌋.
func ThresholdAtFPR(benign []float64, fpr float64) float64 {
	s := append([]float64(nil), benign...)
	sort.Sort(sort.Reverse(sort.Float64Slice(s)))
	if len(s) == 0 {
		return 0.5
	}
	k := int(math.Floor(fpr * float64(len(s))))
	if k <= 0 {
		return s[0] + (1-s[0])/2
	}
	if k >= len(s) {
		return s[len(s)-1] / 2
	}
	return (s[k-1] + s[k]) / 2
}

// Calibrate sets m's preset thresholds from benign scores (out-of-fold) by PresetFPR.
func Calibrate(m *Model, benign []float64) {
	if m.Meta.Thresholds == nil {
		m.Meta.Thresholds = map[string]float64{}
	}
	for p, fpr := range PresetFPR {
		m.Meta.Thresholds[p] = ThresholdAtFPR(benign, fpr)
	}
}
