#!/usr/bin/python3
"""Cross-check of the jailbreak model family with scikit-learn (`make crosscheck-jailbreak`).

Usage: crosscheck_sklearn.py TRAIN.jsonl HELD_OUT.jsonl [CONFIG ...]

TRAIN.jsonl is ../shared/data/governance/prompts-train.jsonl; HELD_OUT.jsonl is the
held-out 20 % that `go run ./internal/cmd/train-jailbreak -write-held-out F` writes (the
same split the committed model is measured on). Rows of TRAIN whose text is in HELD_OUT
are left out, so the models see only the training split.

Each CONFIG is FEATURES:MODEL: FEATURES one or both of w (TF-IDF of words and word
bigrams) and c (TF-IDF of character 3-5-grams within words); MODEL lrC (logistic
regression with inverse regularisation C) or svmC (linear SVM). Default: wc:lr10 wc:svm1
c:lr10 w:lr10.

For each it prints the true-positive rate at 1 % false positives out of fold (5-fold
cross-validation on the training split, threshold from the benign out-of-fold scores, as
train-jailbreak calibrates its default preset), and on the held-out split with that
threshold (its TPR and FPR). The held-out split chooses nothing. Needs python3-sklearn
(Debian) and takes about 35 s per CONFIG on two cores.
"""

import json
import sys

import numpy as np
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def vectorizers(kind):
    out = []
    if "w" in kind:
        out.append(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True))
    if "c" in kind:
        out.append(TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2,
                                   sublinear_tf=True, max_features=300000))
    return out


def features(kind, fit_texts, texts):
    a, b = [], []
    for v in vectorizers(kind):
        a.append(v.fit_transform(fit_texts))
        b.append(v.transform(texts))
    return hstack(a).tocsr(), hstack(b).tocsr()


def model(name):
    if name.startswith("lr"):
        return LogisticRegression(C=float(name[2:]), max_iter=2000)
    if name.startswith("svm"):
        return LinearSVC(C=float(name[3:]))
    raise SystemExit("unknown model " + name)


def threshold(benign_scores, fpr=0.01):
    b = np.sort(benign_scores)
    return b[min(int(np.floor(len(b) * (1 - fpr))), len(b) - 1)]


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    rows, held = load(sys.argv[1]), load(sys.argv[2])
    held_texts = {r["text"] for r in held}
    train = [r for r in rows if r["text"] not in held_texts]
    x = [r["text"] for r in train]
    y = np.array([r["label"] == "jailbreak" for r in train], dtype=int)
    xt = [r["text"] for r in held]
    yt = np.array([r["label"] == "jailbreak" for r in held], dtype=int)
    print(f"training split {len(x)} rows, held-out {len(xt)}")
    for cfg in sys.argv[3:] or ["wc:lr10", "wc:svm1", "c:lr10", "w:lr10"]:
        kind, name = cfg.split(":")
        oof = np.zeros(len(x))
        for a, b in StratifiedKFold(5, shuffle=True, random_state=1).split(x, y):
            fa, fb = features(kind, [x[i] for i in a], [x[i] for i in b])
            oof[b] = model(name).fit(fa, y[a]).decision_function(fb)
        t = threshold(oof[y == 0])
        fa, fb = features(kind, x, xt)
        st = model(name).fit(fa, y).decision_function(fb)
        print(f"{cfg}: out-of-fold TPR at 1 % FPR {(oof[y == 1] > t).mean():.3f}; "
              f"held-out TPR {(st[yt == 1] > t).mean():.3f} at FPR {(st[yt == 0] > t).mean():.3f}",
              flush=True)


if __name__ == "__main__":
    main()
