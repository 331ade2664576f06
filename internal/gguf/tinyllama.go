package gguf

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// ChatMLTemplate is the Jinja chat template the tiny model carries by default
// (tokenizer.chat_template), in the ChatML form many models use.
const ChatMLTemplate = "{% for message in messages %}" +
	"{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}" +
	"{% endfor %}" +
	"{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// Token types of tokenizer.ggml.token_type, as llama.cpp numbers them.
const (
	TokenNormal  int32 = 1
	TokenUnknown int32 = 2
	TokenControl int32 = 3
	TokenByte    int32 = 6
)

// Special token ids of the tiny model.
const (
	TinyUnknownID = 0
	TinyBOSID     = 1
	TinyEOSID     = 2
)

// TinyLlama describes a small random-weight model of llama architecture. Its weights are
// drawn from a generator seeded with Seed, so the same description always gives the
// same file, byte for byte.
type TinyLlama struct {
	// Name goes into general.name.
	Name string
	// Seed of the weights.
	Seed uint64
	// EmbeddingLength is n_embd; HeadCount must divide it.
	EmbeddingLength int
	HeadCount       int
	BlockCount      int
	// FeedForwardLength is n_ff.
	FeedForwardLength int
	ContextLength     int
	// NoByteTokens leaves out the 256 byte tokens <0x00>…<0xFF>. llama.cpp loads such a
	// model but aborts the whole process when it meets text the vocabulary cannot spell:
	// use it only to test that a crash stays inside one process.
	NoByteTokens bool
	// ChatTemplate goes into tokenizer.chat_template; empty leaves the key out.
	ChatTemplate string
}

// DefaultTinyLlama is the model `make testmodel` writes: n_embd 64, 4 heads, 2 layers,
// n_ff 128, an SPM vocabulary with the 256 byte tokens, and the ChatML template.
func DefaultTinyLlama() TinyLlama {
	return TinyLlama{
		Name: "tiny-llama", Seed: 1,
		EmbeddingLength: 64, HeadCount: 4, BlockCount: 2, FeedForwardLength: 128,
		ContextLength: 4096, ChatTemplate: ChatMLTemplate,
	}
}

// tinyWords are the whole words of the vocabulary; every prefix of each (with and
// without the SentencePiece word mark) is a token too, so the tokenizer's merges can
// reach them.
var tinyWords = []string{
	"the", "hello", "world", "you", "are", "what", "is", "model", "token", "llama",
	"and", "of", "to", "in", "it", "a", "limit", "host", "plugin", "session",
	"run", "test", "answer", "question", "one", "two", "three", "yes", "no", "ok",
	"user", "assistant", "system", "say", "write", "story", "about", "cat", "dog", "sun",
}

// Vocab returns the model's tokens, scores and token types, in id order.
func (c TinyLlama) Vocab() (tokens []string, scores []float32, types []int32) {
	seen := map[string]bool{}
	add := func(tok string, score float32, typ int32) {
		if seen[tok] {
			return
		}
		seen[tok] = true
		tokens = append(tokens, tok)
		scores = append(scores, score)
		types = append(types, typ)
	}
	add("<unk>", 0, TokenUnknown)
	add("<s>", 0, TokenControl)
	add("</s>", 0, TokenControl)
	if !c.NoByteTokens {
		for b := 0; b < 256; b++ {
			add(fmt.Sprintf("<0x%02X>", b), 0, TokenByte)
		}
	}
	add("<|im_start|>", 0, TokenControl)
	add("<|im_end|>", 0, TokenControl)
	// Single characters: the SentencePiece space mark, letters, digits, punctuation.
	// Scores are log-probability-like: longer pieces score higher, so merges prefer them.
	add("▁", -1000, TokenNormal)
	for _, r := range "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'\"-:;()\n" {
		add(string(r), -1000, TokenNormal)
	}
	for _, r := range "abcdefghijklmnopqrstuvwxyz" {
		add("▁"+string(r), -900, TokenNormal)
	}
	for _, w := range tinyWords {
		for i := 2; i <= len(w); i++ {
			add(w[:i], float32(-1000+100*i), TokenNormal)
			add("▁"+w[:i], float32(-950+100*i), TokenNormal)
		}
	}
	return tokens, scores, types
}

// Build returns a Writer holding the whole model.
func (c TinyLlama) Build() (*Writer, error) {
	switch {
	case c.EmbeddingLength <= 0 || c.HeadCount <= 0 || c.EmbeddingLength%c.HeadCount != 0:
		return nil, fmt.Errorf("gguf: n_embd %d must be a positive multiple of the head count %d", c.EmbeddingLength, c.HeadCount)
	case (c.EmbeddingLength/c.HeadCount)%2 != 0:
		return nil, fmt.Errorf("gguf: head size %d must be even for RoPE", c.EmbeddingLength/c.HeadCount)
	case c.BlockCount <= 0 || c.FeedForwardLength <= 0 || c.ContextLength <= 0:
		return nil, fmt.Errorf("gguf: block count, feed-forward length and context length must be positive")
	}
	tokens, scores, types := c.Vocab()
	nEmbd, nFF, nVocab := uint64(c.EmbeddingLength), uint64(c.FeedForwardLength), uint64(len(tokens))
	name := c.Name
	if name == "" {
		name = "tiny-llama"
	}

	w := &Writer{}
	w.SetString("general.architecture", "llama")
	w.SetString("general.name", name)
	w.SetUint32("general.file_type", 0) // all F32
	w.SetUint32("general.alignment", Alignment)
	w.SetUint32("llama.context_length", uint32(c.ContextLength))
	w.SetUint32("llama.embedding_length", uint32(nEmbd))
	w.SetUint32("llama.block_count", uint32(c.BlockCount))
	w.SetUint32("llama.feed_forward_length", uint32(nFF))
	w.SetUint32("llama.attention.head_count", uint32(c.HeadCount))
	w.SetUint32("llama.attention.head_count_kv", uint32(c.HeadCount))
	w.SetFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5)
	w.SetUint32("llama.rope.dimension_count", uint32(c.EmbeddingLength/c.HeadCount))
	w.SetFloat32("llama.rope.freq_base", 10000)
	w.SetUint32("llama.vocab_size", uint32(nVocab))
	w.SetString("tokenizer.ggml.model", "llama")
	w.SetStrings("tokenizer.ggml.tokens", tokens)
	w.SetFloat32s("tokenizer.ggml.scores", scores)
	w.SetInt32s("tokenizer.ggml.token_type", types)
	w.SetUint32("tokenizer.ggml.unknown_token_id", TinyUnknownID)
	w.SetUint32("tokenizer.ggml.bos_token_id", TinyBOSID)
	w.SetUint32("tokenizer.ggml.eos_token_id", TinyEOSID)
	w.SetBool("tokenizer.ggml.add_bos_token", true)
	w.SetBool("tokenizer.ggml.add_eos_token", false)
	if c.ChatTemplate != "" {
		w.SetString("tokenizer.chat_template", c.ChatTemplate)
	}

	rng := rand.New(rand.NewPCG(c.Seed, 0x6c696d6974)) // "limit"
	normal := func(n uint64, std float64) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(rng.NormFloat64() * std)
		}
		return out
	}
	ones := func(n uint64) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = 1
		}
		return out
	}
	// Scales keep activations near unit size through the layers, and the output logits
	// spread a few units apart: sampling then depends visibly on the seed.
	inStd := 1 / math.Sqrt(float64(nEmbd))
	w.AddTensor("token_embd.weight", []uint64{nEmbd, nVocab}, normal(nEmbd*nVocab, 1))
	for i := 0; i < c.BlockCount; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		w.AddTensor(p+"attn_norm.weight", []uint64{nEmbd}, ones(nEmbd))
		w.AddTensor(p+"attn_q.weight", []uint64{nEmbd, nEmbd}, normal(nEmbd*nEmbd, inStd))
		w.AddTensor(p+"attn_k.weight", []uint64{nEmbd, nEmbd}, normal(nEmbd*nEmbd, inStd))
		w.AddTensor(p+"attn_v.weight", []uint64{nEmbd, nEmbd}, normal(nEmbd*nEmbd, inStd))
		w.AddTensor(p+"attn_output.weight", []uint64{nEmbd, nEmbd}, normal(nEmbd*nEmbd, inStd))
		w.AddTensor(p+"ffn_norm.weight", []uint64{nEmbd}, ones(nEmbd))
		w.AddTensor(p+"ffn_gate.weight", []uint64{nEmbd, nFF}, normal(nEmbd*nFF, inStd))
		w.AddTensor(p+"ffn_up.weight", []uint64{nEmbd, nFF}, normal(nEmbd*nFF, inStd))
		w.AddTensor(p+"ffn_down.weight", []uint64{nFF, nEmbd}, normal(nFF*nEmbd, 1/math.Sqrt(float64(nFF))))
	}
	w.AddTensor("output_norm.weight", []uint64{nEmbd}, ones(nEmbd))
	w.AddTensor("output.weight", []uint64{nEmbd, nVocab}, normal(nEmbd*nVocab, 2.5*inStd))
	if w.err != nil {
		return nil, w.err
	}
	return w, nil
}

// WriteTinyLlama writes the model c describes to path (atomically).
func WriteTinyLlama(path string, c TinyLlama) error {
	w, err := c.Build()
	if err != nil {
		return err
	}
	return w.WriteFile(path)
}
