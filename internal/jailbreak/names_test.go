package jailbreak

import (
	"slices"
	"testing"
)

// TestIsAIName: the names of AI models and makers are matched alone or with a version
// glued on, and nothing that merely starts like one.
func TestIsAIName(t *testing.T) {
	for _, w := range []string{"gpt", "chatgpt", "gpt4", "gpt4o", "gpt35turbo", "openai", "claude", "claude3", "llama2", "gemini15", "mistral", "deepseek"} {
		if !isAIName(w) {
			t.Errorf("isAIName(%q) = false", w)
		}
	}
	for _, w := range []string{"gp", "gptx", "llamas", "claudette", "bingo", "palm", "4", "ai", "model", "assistant", "openair"} {
		if isAIName(w) {
			t.Errorf("isAIName(%q) = true", w)
		}
	}
}

// TestMaskedNamesShareFeatures: with names masked, a text's features do not depend on
// which AI it names ("ask ChatGPT" and "ask Claude" are the same text to the model), and
// without masking they do; other words are untouched.
func TestMaskedNamesShareFeatures(t *testing.T) {
	feats := func(fs featureSet, text string) []uint32 {
		n := Normalize(text).Text
		toks := tokenize(n, nil, true)
		var hs []uint32
		var runes []int
		for k := range toks {
			hs, runes = tokenFeatures(fs, n, toks, k, runes, hs, nil)
		}
		slices.Sort(hs)
		return hs
	}
	fs := DefaultTrainConfig().features()
	if !fs.maskNames {
		t.Fatal("the default configuration does not mask names")
	}
	if a, b := feats(fs, "please ask ChatGPT about GPT-4 pricing"), feats(fs, "please ask Claude about Gemini-4 pricing"); !slices.Equal(a, b) {
		t.Error("masked: two texts naming different AIs have different features")
	}
	if a, b := feats(fs, "please ask ChatGPT about pricing"), feats(fs, "please ask Bob about pricing"); slices.Equal(a, b) {
		t.Error("masked: a person's name reads as an AI's")
	}
	fs.maskNames = false
	if a, b := feats(fs, "please ask ChatGPT about pricing"), feats(fs, "please ask Claude about pricing"); slices.Equal(a, b) {
		t.Error("unmasked: the names are not told apart")
	}
}
