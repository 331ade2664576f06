# Governance rule plugins (plugins/governance-*, internal/jailbreak). Their tests run with
# `make test`.
.PHONY: train-jailbreak eval-jailbreak eval-jailbreak-api eval-planted-api cv-planted-jailbreak tune-jailbreak oof-misses-jailbreak rule-check-jailbreak crosscheck-jailbreak bench-governance

# Retrain the jailbreak model from ../shared/data/governance/prompts-train.jsonl, half
# of the Markdown documents and of a sample of the Go source files of the modules go.mod
# requires (benign documents, fetched by `go mod download -json`; see
# internal/cmd/train-jailbreak/docs.go) and half of the
# team's written corpus (internal/jailbreak/corpus, see its SOURCES.md), with a fixed seed:
# the same data gives the same file byte for byte. Recalibrates the presets on benign
# prompts and rewrites internal/jailbreak/model/{jailbreak.model.gz,metrics.json,METRICS.md}.
# Also trains the planted-instruction scorer (jailbreak.planted) on the documents written
# twice, without and with a planted instruction (internal/jailbreak/corpus/planted-?.jsonl),
# into internal/jailbreak/model/planted.model.gz, and the scorer of what a program printed,
# trained with benign program output and assistant answers too (corpus/output-*), into
# planted-output.model.gz, and measures them on the test pairs (planted-test-*.jsonl), as
# prompts and as output. About two minutes.
train-jailbreak:
	$(GO) run ./internal/cmd/train-jailbreak

# Measure the committed model (held-out split, own hard cases per category, length-only
# baseline) without training; prints the METRICS.md tables.
eval-jailbreak:
	$(GO) run ./internal/cmd/train-jailbreak -eval-only

# The same held-out split measured through a running daemon (start one with `make run`;
# LIMIT_ADDR or -addr elsewhere) with limitctl governance eval: each preset's rates and
# confusion matrix, ROC-AUC, and the length-only baseline at the same false-positive rate.
eval-jailbreak-api: build
	$(GO) run ./internal/cmd/train-jailbreak -write-held-out build/held-out.jsonl
	$(BIN)/limitctl governance eval build/held-out.jsonl

# The planted-instruction test pairs measured through a running daemon, as above: sent as
# prompts, then as a program's output (read by the scorer of output).
eval-planted-api: build
	$(GO) run ./internal/cmd/train-jailbreak -write-planted-test build/planted-test.jsonl
	$(BIN)/limitctl governance eval build/planted-test.jsonl
	$(BIN)/limitctl governance eval --kind output build/planted-test.jsonl

# The planted-instruction scorers' 5-fold cross-validated figures on their training pairs
# (by the injection's language) and the benign training texts, and their test pairs': the
# scorer of prompts and documents, then the scorer of output (with the benign output's
# held-out half): how DefaultPlantedTrainConfig was chosen. PLANTED_CONFIG='{"min_words":4}'
# measures a change to it. About 40 s.
cv-planted-jailbreak:
	$(GO) run ./internal/cmd/train-jailbreak -planted-cv

# Cross-validate the hyper-parameter sweep on the training split only (5 folds; the
# held-out split is never looked at) and print each setting's ROC-AUC and TPR at 1 % and
# 0.1 % false positives: how DefaultTrainConfig was chosen. Takes about 20 minutes.
# TUNE_CONFIGS='{"nb":3};{"skip_grams":0}' runs those changes to the default instead;
# TUNE_EXTRA_OOF=1 also scores the documents and the written corpus's training half out
# of fold at each preset (the training-side view of METRICS.md's other sets).
tune-jailbreak:
	$(GO) run ./internal/cmd/train-jailbreak -tune

# Error analysis without the held-out split: the training split's jailbreaks the whole
# detector misses, and the benign texts it flags, with the model scored out of fold (5
# folds) at the default preset's threshold. Rules are written from these. About 10 s.
oof-misses-jailbreak:
	$(GO) run ./internal/cmd/train-jailbreak -oof-misses

# Before a phrase rule lands: how many benign texts the rules and decoders fire on (each
# one printed) and how many jailbreaks they catch, per set and per phrase rule: the
# training split, the documents and the written corpus's training half (the sets rules
# are written from; add -measured to the command for the sets only measured, once a
# rule is final). The held-out split is not read. About 30 s.
rule-check-jailbreak:
	$(GO) run ./internal/cmd/train-jailbreak -rule-check

# The same task for a standard model family from another library: TF-IDF word and
# character n-grams with logistic regression or a linear SVM (scikit-learn; `apt-get
# install python3-sklearn`, not needed by anything else), out of fold on the training
# split and on the held-out split at the out-of-fold threshold. A check that the
# committed model's ceiling is the data's, not the code's. About 2.5 minutes.
JAILBREAK_DATA ?= ../shared/data/governance/prompts-train.jsonl

crosscheck-jailbreak:
	@mkdir -p build
	$(GO) run ./internal/cmd/train-jailbreak -write-held-out build/held-out.jsonl
	/usr/bin/python3 scripts/jailbreak/crosscheck_sklearn.py $(JAILBREAK_DATA) build/held-out.jsonl

# Per-call latency of each rule in-process and through its plugin process, with the gRPC
# floor (a Describe round trip) measured in the same run; p50/p99 in µs.
bench-governance:
	$(GO) test -run '^$$' -bench 'Evaluate2000' -benchtime 3000x -count 1 ./plugins/governance-jailbreak
	$(GO) test -run '^$$' -bench 'LargeDocument' -benchtime 5x -count 1 ./plugins/governance-jailbreak
	$(GO) test -run '^$$' -bench 'Evaluate|SessionGraph' -benchtime 2000x -count 1 ./plugins/governance-codesafety ./plugins/governance-anomaly
	$(GO) test -run '^$$' -bench 'EvaluateByContent/2000B' -benchtime 3000x -count 1 ./host/governance
