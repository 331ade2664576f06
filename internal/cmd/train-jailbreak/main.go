// Command train-jailbreak trains the jailbreak detector's model reproducibly and
// measures the detector.
//
//	go run ./internal/cmd/train-jailbreak            # train, calibrate, write model and metrics
//	go run ./internal/cmd/train-jailbreak -eval-only # measure the committed model
//	go run ./internal/cmd/train-jailbreak -misses    # print the held-out texts the default preset gets wrong
//	go run ./internal/cmd/train-jailbreak -tune      # cross-validate a hyper-parameter sweep on the training split
//
// It splits the training file deterministically (20 % held out, by sha256 of each text),
// trains a logistic regression over naive-Bayes-scaled hashed word, word-pair and
// character n-grams (NB-SVM) on the rest with a fixed seed, calibrates the preset thresholds on out-of-fold scores of the benign
// training texts (permissive 0.1 %, default 1 %, strict 5 % false positives), and
// evaluates the whole detector (phrase rules, decoders, model) on the held-out split and
// on the hand-written prompts in testdata/governance, beside a length-only baseline
// calibrated the same way. The same data and flags give the same model, byte for byte.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/limitgraph/limit/internal/jailbreak"
)

func main() {
	root := jailbreak.ModuleRoot()
	data := flag.String("data", filepath.Join(root, jailbreak.TrainingDataRel), "training file (JSON lines text, label)")
	modelPath := flag.String("model", filepath.Join(root, "internal/jailbreak/model/jailbreak.model.gz"), "model file to write (or read with -eval-only)")
	metricsDir := flag.String("metrics", filepath.Join(root, "internal/jailbreak/model"), "directory for metrics.json and METRICS.md")
	hard := flag.String("hard", filepath.Join(root, "testdata/governance/*.jsonl"), "glob of hand-written test sets, evaluated per category")
	evalOnly := flag.Bool("eval-only", false, "do not train: evaluate the model file and print the metrics")
	withoutPlanted := flag.Bool("without-planted", false, "with -eval-only: measure the detector without its planted-instruction scorer (the window model, phrase rules and decoders alone)")
	sweep := flag.Bool("tune", false, "print out-of-fold metrics on the training split for a sweep of hyper-parameters, then exit")
	misses := flag.Bool("misses", false, "with -eval-only: print the held-out texts the default preset gets wrong, then exit")
	oofMisses := flag.Bool("oof-misses", false, "print the training split's texts the whole detector misses or flags out of fold (the model's scores from 5-fold cross-validation, its threshold at the default preset's false-positive rate), then exit; the held-out split is not read")
	withDocs := flag.Bool("docs", true, "also train on benign documents: the Markdown files and a sample of the Go source files of the modules go.mod requires (go mod download -json fetches them); half of the files held out and measured")
	withOutputs := flag.Bool("outputs", true, "also train the planted-instruction scorer on benign output (pieces of real programs' output and assistant answers, "+outputGlob+"); half of it held out and measured")
	withWritten := flag.Bool("written", true, "also train on the team's written corpus ("+writtenGlob+"); half of it held out and measured")
	ruleCheck := flag.Bool("rule-check", false, "print how many benign texts the phrase rules and decoders fire on, and how many jailbreaks they catch, per set and per phrase rule (training split, documents, the written corpus's training half), then exit; the held-out split is not read")
	ruleCheckMeasured := flag.Bool("measured", false, "with -rule-check: also the sets that are only measured (the written corpus's held-out half, testdata/governance); reading them makes them development sets")
	plantedCVFlag := flag.Bool("planted-cv", false, "print the planted-instruction scorers' cross-validated figures on their training pairs (by the injection's language) and the benign training texts, and their test pairs' and held-out output's: the scorer of prompts and documents, then the scorer of output (PLANTED_CONFIG: JSON changes to the default configuration), then exit; the held-out split is not read")
	plantedOut := flag.String("write-planted-test", "", "write the planted-instruction test pairs as JSON lines {\"text\", \"label\"} to this file (each injected text a jailbreak, each benign one benign; for limitctl governance eval), then exit")
	heldOut := flag.String("write-held-out", "", "write the held-out split as JSON lines {\"text\", \"label\"} to this file (for limitctl governance eval), then exit")
	flag.Parse()
	if *heldOut != "" {
		if err := writeHeldOut(*data, *heldOut); err != nil {
			fmt.Fprintln(os.Stderr, "train-jailbreak:", err)
			os.Exit(1)
		}
		return
	}
	if *misses {
		if err := printMisses(*data, *modelPath); err != nil {
			fmt.Fprintln(os.Stderr, "train-jailbreak:", err)
			os.Exit(1)
		}
		return
	}
	if *plantedOut != "" {
		p, err := plantedCorpus(root)
		if err == nil {
			err = writeExamples(p.testExamples(), *plantedOut)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "train-jailbreak:", err)
			os.Exit(1)
		}
		return
	}
	var docs *Docs
	if *withDocs {
		d, err := benignDocs(root)
		if err != nil {
			fmt.Fprintln(os.Stderr, "train-jailbreak: benign documents:", err, "(they come from the module cache; -docs=false trains without them)")
			os.Exit(1)
		}
		docs = &d
	}
	var written *Written
	if *withWritten {
		w, err := writtenCorpus(root)
		if err != nil {
			fmt.Fprintln(os.Stderr, "train-jailbreak: written corpus:", err)
			os.Exit(1)
		}
		written = &w
	}
	// Trained on in every fold and by the final model, never scored for calibration.
	extra := append(slices.Clip(docs.train()), written.train()...)
	planted, err := plantedCorpus(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "train-jailbreak: planted-instruction corpus:", err)
		os.Exit(1)
	}
	var outputs *Outputs
	if *withOutputs {
		o, err := outputCorpus(root)
		if err != nil {
			fmt.Fprintln(os.Stderr, "train-jailbreak: output corpus:", err)
			os.Exit(1)
		}
		outputs = &o
	}
	if *oofMisses || *sweep || *ruleCheck || *plantedCVFlag {
		// These read the training split only.
		ex, _, err := jailbreak.LoadJSONL(*data)
		if err != nil {
			fmt.Fprintln(os.Stderr, "train-jailbreak:", err)
			os.Exit(1)
		}
		train, _ := jailbreak.Split(ex, 0.2)
		switch {
		case *plantedCVFlag:
			cfg := jailbreak.DefaultPlantedTrainConfig()
			if v := os.Getenv("PLANTED_CONFIG"); v != "" {
				if err := json.Unmarshal([]byte(v), &cfg); err != nil {
					fmt.Fprintln(os.Stderr, "train-jailbreak: PLANTED_CONFIG:", err)
					os.Exit(1)
				}
			}
			fmt.Printf("%+v\n", cfg)
			plantedCV(&planted, train, docs, written, outputs, cfg)
		case *ruleCheck:
			if err := printRuleCheck(root, train, docs, written, *ruleCheckMeasured); err != nil {
				fmt.Fprintln(os.Stderr, "train-jailbreak:", err)
				os.Exit(1)
			}
		case *oofMisses:
			printOOFMisses(train, extra)
		default:
			var valid []jailbreak.Example
			if written != nil {
				valid = written.HeldOut
			}
			tune(train, extra, valid, sweepConfigs())
		}
		return
	}
	if *withoutPlanted && !*evalOnly {
		fmt.Fprintln(os.Stderr, "train-jailbreak: -without-planted needs -eval-only")
		os.Exit(2)
	}
	if err := run(*data, *modelPath, *metricsDir, *hard, *evalOnly, *withoutPlanted, docs, written, &planted, outputs, extra); err != nil {
		fmt.Fprintln(os.Stderr, "train-jailbreak:", err)
		os.Exit(1)
	}
}

// writeHeldOut writes the held-out split of the training file (the rows the model never
// saw and the metrics are measured on) as JSON lines.
func writeHeldOut(data, path string) error {
	ex, _, err := jailbreak.LoadJSONL(data)
	if err != nil {
		return err
	}
	_, test := jailbreak.Split(ex, 0.2)
	if err := writeExamples(test, path); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote the %d held-out rows of %s to %s\n", len(test), data, path)
	return nil
}

// writeExamples writes examples as JSON lines {"text", "label"}.
func writeExamples(ex []jailbreak.Example, path string) error {
	var b strings.Builder
	for _, e := range ex {
		line, err := json.Marshal(map[string]string{"text": e.Text, "label": e.Label})
		if err != nil {
			return err
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// codeCorpus is the codesafety rule's corpus of benign Python programs, each after a line
// "#### name".
const codeCorpus = "plugins/governance-codesafety/testdata/benign_corpus.txt"

// codePrompts returns the programs of codeCorpus as benign examples.
func codePrompts(root string) ([]jailbreak.Example, error) {
	b, err := os.ReadFile(filepath.Join(root, codeCorpus))
	if err != nil {
		return nil, err
	}
	parts := strings.Split(string(b), "\n#### ")
	var out []jailbreak.Example
	for _, p := range parts[1:] {
		if _, prog, ok := strings.Cut(p, "\n"); ok && strings.TrimSpace(prog) != "" {
			out = append(out, jailbreak.Example{Text: prog, Label: jailbreak.LabelBenign, Source: codeCorpus})
		}
	}
	return out, nil
}

// Metrics is what metrics.json holds.
type Metrics struct {
	DataSHA256 string                `json:"data_sha256"`
	Rows       int                   `json:"rows"`
	TrainRows  int                   `json:"train_rows"`
	HeldOut    int                   `json:"held_out_rows"`
	Train      jailbreak.TrainConfig `json:"train"`
	Thresholds map[string]float64    `json:"thresholds"`
	Length     map[string]float64    `json:"length_thresholds"`
	ModelBytes int                   `json:"model_bytes"`
	Sets       []jailbreak.SetResult `json:"sets"`
	Categories []jailbreak.SetResult `json:"hard_categories"`
	Docs       *DocsMeta             `json:"benign_documents,omitempty"`
	Written    *WrittenMeta          `json:"written_corpus,omitempty"`
	Planted    *PlantedMeta          `json:"planted,omitempty"`
	Outputs    *WrittenMeta          `json:"output_corpus,omitempty"`
}

// PlantedMeta describes the planted-instruction scorer (see planted.go).
type PlantedMeta struct {
	Files      []string                     `json:"files"`
	TestFiles  []string                     `json:"test_files"`
	SHA256     string                       `json:"sha256"`
	Train      int                          `json:"train_pairs"`
	Test       int                          `json:"test_pairs"`
	Config     jailbreak.PlantedTrainConfig `json:"config"`
	Thresholds map[string]float64           `json:"thresholds"`
	// OutputThresholds and OutputBytes are the scorer of output's.
	OutputThresholds map[string]float64 `json:"output_thresholds,omitempty"`
	OutputBytes      int                `json:"output_bytes,omitempty"`
	FPR              map[string]float64 `json:"benign_share"`
	Bytes            int                `json:"bytes"`
}

// WrittenMeta describes the written corpus (see written.go).
type WrittenMeta struct {
	Files   []string `json:"files"`
	SHA256  string   `json:"sha256"`
	Train   int      `json:"train_rows"`
	HeldOut int      `json:"held_out_rows"`
}

// DocsMeta describes the benign document set (see docs.go).
type DocsMeta struct {
	SHA256  string `json:"sha256"`
	Files   int    `json:"files"`
	Train   int    `json:"train_chunks"`
	HeldOut int    `json:"held_out_chunks"`
}

// train returns the training half of the documents, or none.
func (d *Docs) train() []jailbreak.Example {
	if d == nil {
		return nil
	}
	return d.Train
}

func run(data, modelPath, metricsDir, hardGlob string, evalOnly, withoutPlanted bool, docs *Docs, written *Written, planted *Planted, outputs *Outputs, extra []jailbreak.Example) error {
	ex, sum, err := jailbreak.LoadJSONL(data)
	if err != nil {
		return fmt.Errorf("%w (the training file is at %s relative to the repository root)", err, jailbreak.TrainingDataRel)
	}
	if sum != jailbreak.TrainingDataSHA256 {
		fmt.Fprintf(os.Stderr, "warning: %s has sha256 %s, not the %s the committed model was trained on\n", data, sum, jailbreak.TrainingDataSHA256)
	}
	train, test := jailbreak.Split(ex, 0.2)
	cfg := jailbreak.DefaultTrainConfig()
	var m *jailbreak.Model
	var raw []byte
	if evalOnly {
		raw, err = os.ReadFile(modelPath)
		if err != nil {
			return fmt.Errorf("read model: %w", err)
		}
		if m, err = loadModels(raw, modelPath); err != nil {
			return err
		}
		if m.Meta.DataSHA256 != sum {
			fmt.Fprintf(os.Stderr, "warning: the model was trained on data with sha256 %s, this file has %s\n", m.Meta.DataSHA256, sum)
		}
		if withoutPlanted {
			m.Planted, m.PlantedOutput = nil, nil
		}
	} else {
		start := time.Now()
		// The documents and the written corpus are trained on in every fold, but the
		// thresholds are those of benign prompts' out-of-fold scores.
		oof := jailbreak.OutOfFoldWith(train, extra, cfg)
		var benign []float64
		for i, e := range train {
			if !e.Positive() {
				benign = append(benign, oof[i])
			}
		}
		m = jailbreak.Train(append(slices.Clip(train), extra...), cfg)
		jailbreak.Calibrate(m, benign)
		m.Meta.DataSHA256, m.Meta.Rows = sum, len(ex)
		if raw, err = m.Marshal(); err != nil {
			return err
		}
		// Reload so the metrics measure the quantised weights actually shipped.
		if m, err = jailbreak.UnmarshalModel(raw); err != nil {
			return err
		}
		if err := os.WriteFile(modelPath, raw, 0o644); err != nil {
			return fmt.Errorf("write model: %w", err)
		}
		// The planted-instruction scorers: one for prompts and documents, and, trained with
		// benign output among its negatives, one for what a program printed.
		trainScorer := func(outputs *Outputs, path string) (*jailbreak.PlantedModel, error) {
			pstart := time.Now()
			praw, err := trainPlanted(planted, train, docs, written, outputs, jailbreak.DefaultPlantedTrainConfig()).Marshal()
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(path, praw, 0o644); err != nil {
				return nil, fmt.Errorf("write planted model: %w", err)
			}
			fmt.Fprintf(os.Stderr, "planted-instruction scorer trained on %d pairs in %v; %s (%d bytes)\n", len(planted.Train), time.Since(pstart).Round(time.Millisecond), path, len(praw))
			return jailbreak.UnmarshalPlanted(praw)
		}
		if m.Planted, err = trainScorer(nil, plantedPath(modelPath)); err != nil {
			return err
		}
		if outputs != nil {
			if m.PlantedOutput, err = trainScorer(outputs, plantedOutputPath(modelPath)); err != nil {
				return err
			}
		}
		fmt.Fprintf(os.Stderr, "trained on %d texts, %d documents and %d written texts in %v; model %s (%d bytes)\n", len(train), len(docs.train()), len(written.train()), time.Since(start).Round(time.Millisecond), modelPath, len(raw))
	}

	var trainBenign []jailbreak.Example
	for _, e := range train {
		if !e.Positive() {
			trainBenign = append(trainBenign, e)
		}
	}
	lb := jailbreak.NewLengthBaseline(trainBenign)
	met := Metrics{DataSHA256: sum, Rows: len(ex), TrainRows: len(train), HeldOut: len(test), Train: m.Meta.Train,
		Thresholds: m.Meta.Thresholds, Length: lb.Thresholds, ModelBytes: len(raw)}
	if m.Planted != nil && planted != nil {
		pb, err := m.Planted.Marshal()
		if err != nil {
			return err
		}
		met.Planted = &PlantedMeta{Files: planted.Files, TestFiles: planted.TestFiles, SHA256: planted.SHA256, Train: len(planted.Train), Test: len(planted.Test),
			Config: m.Planted.Meta.Train, Thresholds: m.Planted.Meta.Thresholds, FPR: plantedFPR, Bytes: len(pb)}
		if po := m.PlantedOutput; po != nil {
			ob, err := po.Marshal()
			if err != nil {
				return err
			}
			met.Planted.OutputThresholds, met.Planted.OutputBytes = po.Meta.Thresholds, len(ob)
		}
	}
	held, err := jailbreak.EvaluateSet("held-out 20%", m, lb, test)
	if err != nil {
		return err
	}
	met.Sets = append(met.Sets, held)
	if docs != nil {
		met.Docs = &DocsMeta{SHA256: docs.SHA256, Files: docs.Files, Train: len(docs.Train), HeldOut: len(docs.HeldOut)}
		if len(docs.HeldOut) > 0 {
			r, err := jailbreak.EvaluateSet("benign documents (held-out half)", m, lb, docs.HeldOut)
			if err != nil {
				return err
			}
			met.Sets = append(met.Sets, r)
		}
	}

	if written != nil {
		met.Written = &WrittenMeta{Files: written.Files, SHA256: written.SHA256, Train: len(written.Train), HeldOut: len(written.HeldOut)}
		r, err := jailbreak.EvaluateSet("written corpus (held-out half)", m, lb, written.HeldOut)
		if err != nil {
			return err
		}
		met.Sets = append(met.Sets, r)
		// Its injections planted in documents, beside benign texts of the same carriers:
		// what a bag of n-grams reads worst.
		carried := written.heldOutWhere(func(cat string) bool { return strings.HasSuffix(cat, "-indirect") })
		if r, err := jailbreak.EvaluateSet("written corpus (held-out half), in documents", m, lb, carried); err == nil {
			met.Sets = append(met.Sets, r)
		}
		// Its short everyday messages ("hello", "now in spanish", "are you chatgpt?"), which
		// the training file has few of: a greeting that opens many role-play jailbreaks is
		// no attack on its own.
		short := written.heldOutWhere(isShortEveryday)
		if r, err := jailbreak.EvaluateSet("written corpus (held-out half), short everyday messages", m, lb, short); err == nil {
			met.Sets = append(met.Sets, r)
		}
	}
	// Documents written twice, without and with a planted instruction, by writers none of
	// whose pairs were trained on.
	if ex := planted.testExamples(); len(ex) > 0 {
		if r, err := jailbreak.EvaluateSet("planted-instruction test pairs", m, lb, ex); err == nil {
			met.Sets = append(met.Sets, r)
		}
		// Those whose injection is in another language than English, which the scorer
		// misses more often.
		other := planted.testExamplesWhere(func(q jailbreak.PlantedPair) bool { return q.Lang != "en" })
		if r, err := jailbreak.EvaluateSet("planted-instruction test pairs, injection not in English", m, lb, other); err == nil && len(other) > 0 {
			met.Sets = append(met.Sets, r)
		}
	}
	// What a program printed (text/output), read as the plugin reads it by default: phrase
	// rules, decoders and the planted-instruction scorer at its output thresholds.
	if outputs != nil {
		met.Outputs = &WrittenMeta{Files: outputs.Files, SHA256: outputs.SHA256, Train: len(outputs.Train), HeldOut: len(outputs.HeldOut)}
		asOutput := jailbreak.Reading{Planted: true, Output: true}
		for _, set := range []struct {
			name string
			ex   []jailbreak.Example
		}{
			{"planted-instruction test pairs, as output", planted.testExamples()},
			{"benign program output (held-out half), as output", outputs.heldOutWhere(isProgram)},
			{"assistant answers (held-out half), as output", outputs.heldOutWhere(isAnswer)},
		} {
			if len(set.ex) == 0 {
				continue
			}
			r, err := jailbreak.EvaluateSetAs(set.name, m, lb, set.ex, asOutput)
			if err != nil {
				return err
			}
			met.Sets = append(met.Sets, r)
		}
	}
	// Code pasted into a prompt: the codesafety rule's benign programs, scored as prompts.
	if progs, err := codePrompts(jailbreak.ModuleRoot()); err != nil {
		return err
	} else if r, err := jailbreak.EvaluateSet("benign programs as prompts (codesafety corpus)", m, lb, progs); err == nil {
		met.Sets = append(met.Sets, r)
	}

	// Length-matched subset of the held-out split: texts of 500-4000 bytes, where length
	// says little.
	var mid []jailbreak.Example
	for _, e := range test {
		if n := len(e.Text); n >= 500 && n <= 4000 {
			mid = append(mid, e)
		}
	}
	if r, err := jailbreak.EvaluateSet("held-out, 500-4000 bytes", m, lb, mid); err == nil {
		met.Sets = append(met.Sets, r)
	}

	files, _ := filepath.Glob(hardGlob)
	sort.Strings(files)
	var hard []jailbreak.Example
	for _, f := range files {
		h, _, err := jailbreak.LoadJSONL(f)
		if err != nil {
			return err
		}
		hard = append(hard, h...)
	}
	if len(hard) > 0 {
		r, err := jailbreak.EvaluateSet("own hard cases (all)", m, lb, hard)
		if err != nil {
			return err
		}
		met.Sets = append(met.Sets, r)
		byCat := map[string][]jailbreak.Example{}
		for _, e := range hard {
			byCat[e.Category] = append(byCat[e.Category], e)
		}
		cats := make([]string, 0, len(byCat))
		for c := range byCat {
			cats = append(cats, c)
		}
		slices.Sort(cats)
		for _, c := range cats {
			r, err := jailbreak.EvaluateSet(c, m, lb, byCat[c])
			if err != nil {
				return err
			}
			met.Categories = append(met.Categories, r)
		}
	}

	md := render(met)
	fmt.Print(md)
	if evalOnly {
		return nil
	}
	js, err := json.MarshalIndent(met, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(metricsDir, "metrics.json"), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	if err := os.WriteFile(filepath.Join(metricsDir, "METRICS.md"), []byte(md), 0o644); err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	return nil
}

func render(m Metrics) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Jailbreak detector metrics\n\nWritten by `make train-jailbreak` (internal/cmd/train-jailbreak); do not edit.\n\n")
	fmt.Fprintf(&b, "- training file: `%s` (sha256 `%s`), %d rows: %d train, %d held out (20 %%, by sha256 of the text)\n", jailbreak.TrainingDataRel, m.DataSHA256, m.Rows, m.TrainRows, m.HeldOut)
	feats := "words, bigrams, char 3-5-grams"
	if m.Train.Trigrams {
		feats += ", trigrams"
	}
	if m.Train.SkipGrams > 0 {
		feats += fmt.Sprintf(", skip-bigrams over up to %d words", m.Train.SkipGrams)
	}
	if m.Train.StartTokens > 0 {
		feats += fmt.Sprintf(", the text's first %d tokens", m.Train.StartTokens)
		if m.Train.Context {
			feats += " (added to every window)"
		}
	}
	switch {
	case m.Train.MaxRepeat == 1:
		feats += "; each counted once per window"
	case m.Train.MaxRepeat > 1:
		feats += fmt.Sprintf("; each counted at most %d times per window", m.Train.MaxRepeat)
	}
	family := "logistic regression"
	if m.Train.NB > 0 {
		family = fmt.Sprintf("logistic regression over naive-Bayes-scaled features (NB-SVM: each feature scaled by its log-count ratio in the training windows, smoothing %g; folded into the weights)", m.Train.NB)
	}
	fmt.Fprintf(&b, "- model: %s, 2^%d hashed features (%s), windows of %d tokens every %d; Adagrad lr %g, L2 %g, %d epochs, seed %d; file %d bytes\n",
		family, m.Train.Bits, feats, m.Train.Window, m.Train.Stride, m.Train.LR, m.Train.L2, m.Train.Epochs, m.Train.Seed, m.ModelBytes)
	b.WriteString("- hyper-parameters chosen by 5-fold cross-validation on the training split only (`go run ./internal/cmd/train-jailbreak -tune`); the held-out split is only measured\n")
	fmt.Fprintf(&b, "- thresholds (model probability), calibrated on %d-fold out-of-fold scores of the benign training texts: permissive %.4f, default %.4f, strict %.4f\n",
		m.Train.Folds, m.Thresholds[jailbreak.PresetPermissive], m.Thresholds[jailbreak.PresetDefault], m.Thresholds[jailbreak.PresetStrict])
	if m.Docs != nil {
		fmt.Fprintf(&b, "- also trained on benign documents: %d chunks of the Markdown files and of 1 in %d Go source files of the modules go.mod requires (%d files; sha256 of the chunks `%s`); %d chunks of the other half of the files are measured below, not trained on; thresholds calibrated on prompts only\n",
			m.Docs.Train, goCodeShare, m.Docs.Files, m.Docs.SHA256, m.Docs.HeldOut)
	}
	if m.Written != nil {
		fmt.Fprintf(&b, "- also trained on the team's written corpus (`%s`, sha256 of the files' sha256s `%s`): %d rows; %d more held out (half of each label, by sha256 of the text) and measured below; thresholds calibrated on prompts only\n",
			strings.Join(m.Written.Files, "`, `"), m.Written.SHA256, m.Written.Train, m.Written.HeldOut)
	}
	if p := m.Planted; p != nil {
		fmt.Fprintf(&b, "- planted-instruction scorer (`jailbreak.planted`, beside the model): logistic regression over one sentence (or two neighbouring ones) at a time, 2^%d hashed features (words, adjacent word pairs, the first word, character 4-grams, every pair of the first %d distinct words; each once), sentences of %d words or more; Adagrad lr %g, L2 %g, %d epochs, seed %d; trained on the %d training pairs of `%s` (documents written without and with a planted instruction; sha256 of the files' sha256s `%s`: the sentences the planted version adds are the positives) and every benign training text above as negatives; thresholds (probability) at %g / %g / %g of the %d-fold out-of-fold scores of the benign training prompts and documents: permissive %.6f, default %.6f, strict %.6f; the %d test pairs of `%s` (other writers) are measured below; file %d bytes (`go run ./internal/cmd/train-jailbreak -planted-cv` for its cross-validated figures)\n",
			p.Config.Bits, p.Config.PairWords, p.Config.MinWords, p.Config.LR, p.Config.L2, p.Config.Epochs, p.Config.Seed, p.Train, strings.Join(p.Files, "`, `"), p.SHA256,
			p.FPR[jailbreak.PresetPermissive], p.FPR[jailbreak.PresetDefault], p.FPR[jailbreak.PresetStrict], p.Config.Folds,
			p.Thresholds[jailbreak.PresetPermissive], p.Thresholds[jailbreak.PresetDefault], p.Thresholds[jailbreak.PresetStrict], p.Test, strings.Join(p.TestFiles, "`, `"), p.Bytes)
	}
	if o, p := m.Outputs, m.Planted; o != nil && p != nil && p.OutputThresholds != nil {
		fmt.Fprintf(&b, "- planted-instruction scorer of output (what a program printed, text/output): the same, trained with benign output among its negatives too (`%s`, sha256 of the files' sha256s `%s`: pieces of real programs' output and assistant answers written blind): %d rows; %d more held out (half, by sha256 of the text) and measured below \"as output\" (phrase rules, decoders and this scorer, as the plugin reads text/output)",
			strings.Join(o.Files, "`, `"), o.SHA256, o.Train, o.HeldOut)
		fmt.Fprintf(&b, "; thresholds at the same shares of the out-of-fold scores of the output's training half: permissive %.6f, default %.6f, strict %.6f; file %d bytes\n",
			p.OutputThresholds[jailbreak.PresetPermissive], p.OutputThresholds[jailbreak.PresetDefault], p.OutputThresholds[jailbreak.PresetStrict], p.OutputBytes)
	}
	fmt.Fprintf(&b, "- length baseline (flag when longer than), calibrated the same way: permissive %.0f, default %.0f, strict %.0f bytes\n\n",
		m.Length[jailbreak.PresetPermissive], m.Length[jailbreak.PresetDefault], m.Length[jailbreak.PresetStrict])
	b.WriteString("## Held-out split and own hard cases\n\n")
	b.WriteString(jailbreak.Markdown(m.Sets))
	if len(m.Categories) > 0 {
		b.WriteString("\n## Own hard cases per category (testdata/governance)\n\n")
		b.WriteString(jailbreak.Markdown(m.Categories))
	}
	return b.String()
}

// plantedPath is the planted-instruction scorer's file, beside the model's.
func plantedPath(modelPath string) string {
	return filepath.Join(filepath.Dir(modelPath), "planted.model.gz")
}

// loadModels decodes the model file raw, read from modelPath, and the planted-instruction
// scorers beside it.
func loadModels(raw []byte, modelPath string) (*jailbreak.Model, error) {
	m, err := jailbreak.UnmarshalModel(raw)
	if err != nil {
		return nil, err
	}
	praw, err := os.ReadFile(plantedPath(modelPath))
	if err != nil {
		return nil, fmt.Errorf("read the planted-instruction scorer: %w", err)
	}
	if m.Planted, err = jailbreak.UnmarshalPlanted(praw); err != nil {
		return nil, err
	}
	if praw, err = os.ReadFile(plantedOutputPath(modelPath)); err != nil {
		return nil, fmt.Errorf("read the planted-instruction scorer of output: %w", err)
	}
	if m.PlantedOutput, err = jailbreak.UnmarshalPlanted(praw); err != nil {
		return nil, err
	}
	return m, nil
}

// plantedOutputPath is the file of the planted-instruction scorer of output, beside the
// model's.
func plantedOutputPath(modelPath string) string {
	return filepath.Join(filepath.Dir(modelPath), "planted-output.model.gz")
}
