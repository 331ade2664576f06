package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/limitgraph/limit/internal/jailbreak"
)

// The planted-instruction scorer's corpus: documents written twice, without and with an
// instruction planted for the assistant reading them (see corpus/SOURCES.md). The
// planted-?.jsonl files are trained on; the planted-test-*.jsonl files, by writers
// whose files nothing was trained on, are only measured.
const (
	plantedGlob     = "internal/jailbreak/corpus/planted-?.jsonl"
	plantedTestGlob = jailbreak.PlantedTestGlob
)

// plantedFPR is the share of benign texts (the training split's benign prompts and the
// documents' training half, scored out of fold) each preset lets the planted scorer
// flag, on top of the window model's own budget.
var plantedFPR = map[string]float64{jailbreak.PresetPermissive: 0.0002, jailbreak.PresetDefault: 0.001, jailbreak.PresetStrict: 0.005}

// Planted is the planted-instruction corpus.
type Planted struct {
	Train, Test []jailbreak.PlantedPair
	// Files and TestFiles are the pair files trained on and measured, relative to the
	// root; SHA256 is the sha256 of the sha256s of the files trained on.
	Files, TestFiles []string
	SHA256           string
}

// plantedCorpus loads the pair files under root.
func plantedCorpus(root string) (Planted, error) {
	var p Planted
	h := sha256.New()
	for _, g := range []string{plantedGlob, plantedTestGlob} {
		files, err := filepath.Glob(filepath.Join(root, g))
		if err != nil {
			return Planted{}, err
		}
		if len(files) == 0 {
			return Planted{}, fmt.Errorf("no file matches %s", g)
		}
		sort.Strings(files)
		for _, f := range files {
			pairs, err := jailbreak.LoadPairs(f)
			if err != nil {
				return Planted{}, err
			}
			b, err := os.ReadFile(f)
			if err != nil {
				return Planted{}, err
			}
			rel, _ := filepath.Rel(root, f)
			if g == plantedGlob {
				fmt.Fprintf(h, "%x\x00", sha256.Sum256(b))
				p.Train = append(p.Train, pairs...)
				p.Files = append(p.Files, filepath.ToSlash(rel))
			} else {
				p.Test = append(p.Test, pairs...)
				p.TestFiles = append(p.TestFiles, filepath.ToSlash(rel))
			}
		}
	}
	p.SHA256 = hex.EncodeToString(h.Sum(nil))
	return p, nil
}

// testExamples returns the test pairs as examples: each injected text a jailbreak, each
// benign one benign.
func (p *Planted) testExamples() []jailbreak.Example {
	return p.testExamplesWhere(func(jailbreak.PlantedPair) bool { return true })
}

// testExamplesWhere is testExamples of the pairs keep keeps.
func (p *Planted) testExamplesWhere(keep func(jailbreak.PlantedPair) bool) []jailbreak.Example {
	if p == nil {
		return nil
	}
	var out []jailbreak.Example
	for _, q := range p.Test {
		if !keep(q) {
			continue
		}
		out = append(out,
			jailbreak.Example{Text: q.Injected, Label: jailbreak.LabelJailbreak, Category: "planted-test"},
			jailbreak.Example{Text: q.Benign, Label: jailbreak.LabelBenign, Category: "planted-test"})
	}
	return out
}

// plantedUnit is one piece of the planted scorer's training data, kept whole in a fold:
// a pair, or a benign text.
type plantedUnit struct {
	kind string // "pair", "prompt" (benign training prompt), "doc", "written", "program" (output), "answer" (output)
	pair jailbreak.PlantedPair
	text string
}

func (u plantedUnit) bags(m *jailbreak.PlantedModel) []jailbreak.PlantedBag {
	if u.kind == "pair" {
		return m.Bags(u.pair)
	}
	return []jailbreak.PlantedBag{{Instances: m.Instances(jailbreak.Normalize(u.text).Text)}}
}

// plantedUnits gathers the training data: the training pairs and every benign training
// text (the training split's benign prompts, the documents', the written corpus's and the
// output corpus's training halves).
func plantedUnits(p *Planted, train []jailbreak.Example, docs *Docs, written *Written, outputs *Outputs) []plantedUnit {
	var us []plantedUnit
	for _, q := range p.Train {
		us = append(us, plantedUnit{kind: "pair", pair: q})
	}
	for _, e := range train {
		if !e.Positive() {
			us = append(us, plantedUnit{kind: "prompt", text: e.Text})
		}
	}
	for _, e := range docs.train() {
		us = append(us, plantedUnit{kind: "doc", text: e.Text})
	}
	for _, e := range written.train() {
		if !e.Positive() {
			us = append(us, plantedUnit{kind: "written", text: e.Text})
		}
	}
	for _, e := range outputs.train() {
		kind := "program"
		if isAnswer(e.Category) {
			kind = "answer"
		}
		us = append(us, plantedUnit{kind: kind, text: e.Text})
	}
	return us
}

// plantedOOF scores every unit out of fold: a pair's injected text in a, its benign one
// in b; a benign text in a.
func plantedOOF(us []plantedUnit, cfg jailbreak.PlantedTrainConfig) (a, b []float64) {
	a, b = make([]float64, len(us)), make([]float64, len(us))
	shape := jailbreak.NewPlantedModel(cfg)
	for f := 0; f < cfg.Folds; f++ {
		var bags []jailbreak.PlantedBag
		for i, u := range us {
			if i%cfg.Folds != f {
				bags = append(bags, u.bags(shape)...)
			}
		}
		m := jailbreak.TrainPlanted(bags, cfg)
		for i, u := range us {
			if i%cfg.Folds != f {
				continue
			}
			if u.kind == "pair" {
				a[i] = m.Score(jailbreak.Normalize(u.pair.Injected).Text).Prob
				b[i] = m.Score(jailbreak.Normalize(u.pair.Benign).Text).Prob
			} else {
				a[i] = m.Score(jailbreak.Normalize(u.text).Text).Prob
			}
		}
	}
	return a, b
}

// trainPlanted trains the planted scorer on every unit and calibrates its thresholds on
// the out-of-fold scores of the benign prompts and documents; given benign output, it
// trains the scorer of output, on it too, with thresholds calibrated on it.
func trainPlanted(p *Planted, train []jailbreak.Example, docs *Docs, written *Written, outputs *Outputs, cfg jailbreak.PlantedTrainConfig) *jailbreak.PlantedModel {
	us := plantedUnits(p, train, docs, written, outputs)
	a, _ := plantedOOF(us, cfg)
	m := fitPlanted(us, cfg)
	text, output := plantedThresholds(us, a)
	m.Meta.Thresholds = text
	if outputs != nil {
		m.Meta.Thresholds, m.Meta.Output = output, true
	}
	m.Meta.Pairs, m.Meta.PairsSHA256 = len(p.Train), p.SHA256
	return m
}

// fitPlanted trains a planted scorer on every unit.
func fitPlanted(us []plantedUnit, cfg jailbreak.PlantedTrainConfig) *jailbreak.PlantedModel {
	shape := jailbreak.NewPlantedModel(cfg)
	var bags []jailbreak.PlantedBag
	for _, u := range us {
		bags = append(bags, u.bags(shape)...)
	}
	return jailbreak.TrainPlanted(bags, cfg)
}

// plantedThresholds returns each preset's thresholds: its plantedFPR of the out-of-fold
// scores a of the benign prompts and documents among us, and of the benign output
// (programs' output and assistant answers), or no output thresholds when us holds none.
func plantedThresholds(us []plantedUnit, a []float64) (text, output map[string]float64) {
	var benign, out []float64
	for i, u := range us {
		switch u.kind {
		case "prompt", "doc":
			benign = append(benign, a[i])
		case "program", "answer":
			out = append(out, a[i])
		}
	}
	text = map[string]float64{}
	for preset, fpr := range plantedFPR {
		text[preset] = jailbreak.ThresholdAtFPR(benign, fpr)
	}
	if len(out) == 0 {
		return text, nil
	}
	output = map[string]float64{}
	for preset, fpr := range plantedFPR {
		output[preset] = jailbreak.ThresholdAtFPR(out, fpr)
	}
	return text, output
}

// plantedCV prints the planted scorer's cross-validated figures on the training data
// (pairs: injected against benign; benign texts by kind) at each preset's threshold, and
// the test pairs' with a model trained on everything: what a setting of
// PLANTED_CONFIG (JSON, changes to DefaultPlantedTrainConfig) is chosen by.
func plantedCV(p *Planted, train []jailbreak.Example, docs *Docs, written *Written, outputs *Outputs, cfg jailbreak.PlantedTrainConfig) {
	us := plantedUnits(p, train, docs, written, nil)
	a, b := plantedOOF(us, cfg)
	presets := jailbreak.Presets
	ths, _ := plantedThresholds(us, a)
	row := func(name string, pos, neg []float64) {
		var sc []float64
		var lab []bool
		for _, s := range pos {
			sc, lab = append(sc, s), append(lab, true)
		}
		for _, s := range neg {
			sc, lab = append(sc, s), append(lab, false)
		}
		auc := "  –  "
		if len(pos) > 0 && len(neg) > 0 {
			auc = fmt.Sprintf("%.3f", jailbreak.ROCAUC(sc, lab))
		}
		var cells []string
		for _, pr := range presets {
			tp, fp := 0, 0
			for _, s := range pos {
				if s >= ths[pr] {
					tp++
				}
			}
			for _, s := range neg {
				if s >= ths[pr] {
					fp++
				}
			}
			cells = append(cells, fmt.Sprintf("%3d/%-3d %4d/%-4d", tp, len(pos), fp, len(neg)))
		}
		fmt.Printf("%-36s %s  %s\n", name, auc, strings.Join(cells, "  "))
	}
	fmt.Printf("thresholds (out-of-fold benign prompts and documents): %v\n", ths)
	fmt.Printf("%-36s %-5s  %s\n", "set (caught/pos flagged/neg)", "AUC", strings.Join(presets, "                "))
	inj, ben, kinds := byKind(us, a, b)
	row("out of fold: pairs", inj, ben)
	for _, en := range []bool{true, false} {
		var li, lb []float64
		for i, u := range us {
			if u.kind == "pair" && (u.pair.Lang == "en") == en {
				li, lb = append(li, a[i]), append(lb, b[i])
			}
		}
		name := "out of fold: pairs, injection in English"
		if !en {
			name = "out of fold: pairs, in other languages"
		}
		row(name, li, lb)
	}
	row("out of fold: benign prompts", nil, kinds["prompt"])
	row("out of fold: documents", nil, kinds["doc"])
	row("out of fold: written benign", nil, kinds["written"])
	m := fitPlanted(us, cfg)
	testPairs := func(m *jailbreak.PlantedModel) (ti, tb []float64) {
		for _, q := range p.Test {
			ti = append(ti, m.Score(jailbreak.Normalize(q.Injected).Text).Prob)
			tb = append(tb, m.Score(jailbreak.Normalize(q.Benign).Text).Prob)
		}
		return ti, tb
	}
	ti, tb := testPairs(m)
	row("test pairs", ti, tb)
	var wp, wn []float64
	for _, e := range written.heldOutWhere(func(c string) bool { return strings.HasSuffix(c, "-indirect") }) {
		if s := m.Score(jailbreak.Normalize(e.Text).Text).Prob; e.Positive() {
			wp = append(wp, s)
		} else {
			wn = append(wn, s)
		}
	}
	row("written held-out, in documents", wp, wn)
	if outputs == nil {
		return
	}
	// The scorer of what a program printed: trained with benign output too, at thresholds
	// calibrated on its out-of-fold scores.
	us = plantedUnits(p, train, docs, written, outputs)
	a, b = plantedOOF(us, cfg)
	_, ths = plantedThresholds(us, a)
	fmt.Printf("scorer of output; thresholds (out-of-fold benign program output and answers): %v\n", ths)
	inj, ben, kinds = byKind(us, a, b)
	row("out of fold: pairs as output", inj, ben)
	row("out of fold: program output", nil, kinds["program"])
	row("out of fold: assistant answers", nil, kinds["answer"])
	m = fitPlanted(us, cfg)
	ti, tb = testPairs(m)
	row("test pairs as output", ti, tb)
	for _, set := range []struct {
		name string
		keep func(string) bool
	}{{"program output held-out", isProgram}, {"assistant answers held-out", isAnswer}} {
		var sc []float64
		for _, e := range outputs.heldOutWhere(set.keep) {
			sc = append(sc, m.Score(jailbreak.Normalize(e.Text).Text).Prob)
		}
		row(set.name, nil, sc)
	}
}

// byKind sorts the out-of-fold scores of plantedOOF by unit: the pairs' injected (inj) and
// benign (ben) versions, and the benign texts by kind.
func byKind(us []plantedUnit, a, b []float64) (inj, ben []float64, kinds map[string][]float64) {
	kinds = map[string][]float64{}
	for i, u := range us {
		if u.kind == "pair" {
			inj, ben = append(inj, a[i]), append(ben, b[i])
		} else {
			kinds[u.kind] = append(kinds[u.kind], a[i])
		}
	}
	return inj, ben, kinds
}
