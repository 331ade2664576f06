package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
)

// TestWriterRoundTrip writes a file of every value kind and reads it back with an
// independent parser (gguf-parser-go), then checks the tensor bytes at their offsets.
func TestWriterRoundTrip(t *testing.T) {
	w := &Writer{}
	w.SetString("general.architecture", "test")
	w.SetUint32("u32", 7)
	w.SetInt32("i32", -7)
	w.SetUint64("u64", 1<<40)
	w.SetFloat32("f32", 0.5)
	w.SetBool("yes", true)
	w.SetStrings("strs", []string{"a", "", "ünï"})
	w.SetFloat32s("floats", []float32{1, -2.5})
	w.SetInt32s("ints", []int32{3, -4, 5})
	w.AddTensor("vec", []uint64{3}, []float32{1, 2, 3})
	w.AddTensor("mat", []uint64{2, 3}, []float32{1, 2, 3, 4, 5, 6})
	path := filepath.Join(t.TempDir(), "x.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	f, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Header.Magic != parser.GGUFMagicGGUFLe || f.Header.Version != parser.GGUFVersionV3 ||
		f.Header.TensorCount != 2 || f.Header.MetadataKVCount != 9 {
		t.Fatalf("header: %+v", f.Header)
	}
	kv := f.Header.MetadataKV
	get := func(k string) parser.GGUFMetadataKV {
		v, ok := kv.Get(k)
		if !ok {
			t.Fatalf("key %s missing", k)
		}
		return v
	}
	if get("general.architecture").ValueString() != "test" || get("u32").ValueUint32() != 7 ||
		get("i32").ValueInt32() != -7 || get("u64").ValueUint64() != 1<<40 || get("f32").ValueFloat32() != 0.5 ||
		!get("yes").ValueBool() {
		t.Error("scalar values differ")
	}
	if got := get("strs").ValueArray().ValuesString(); !slices.Equal(got, []string{"a", "", "ünï"}) {
		t.Errorf("strings: %q", got)
	}
	if got := get("floats").ValueArray().ValuesFloat32(); !slices.Equal(got, []float32{1, -2.5}) {
		t.Errorf("floats: %v", got)
	}
	if got := get("ints").ValueArray().ValuesInt32(); !slices.Equal(got, []int32{3, -4, 5}) {
		t.Errorf("ints: %v", got)
	}
	if f.TensorDataStartOffset%Alignment != 0 {
		t.Errorf("tensor data starts at %d, not aligned to %d", f.TensorDataStartOffset, Alignment)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range f.TensorInfos {
		if ti.Offset%Alignment != 0 {
			t.Errorf("tensor %s at offset %d, not aligned", ti.Name, ti.Offset)
		}
		n := int(ti.Elements())
		start := int(f.TensorDataStartOffset) + int(ti.Offset)
		var got []float32
		for i := 0; i < n; i++ {
			got = append(got, math.Float32frombits(binary.LittleEndian.Uint32(raw[start+4*i:])))
		}
		want := map[string][]float32{"vec": {1, 2, 3}, "mat": {1, 2, 3, 4, 5, 6}}[ti.Name]
		if !slices.Equal(got, want) {
			t.Errorf("tensor %s: %v, want %v", ti.Name, got, want)
		}
	}
}

func TestWriterErrors(t *testing.T) {
	for _, tt := range []struct {
		name   string
		build  func(w *Writer)
		expect string
	}{
		{"duplicate key", func(w *Writer) { w.SetUint32("k", 1); w.SetString("k", "x") }, `metadata key "k" set twice`},
		{"empty key", func(w *Writer) { w.SetBool("", true) }, "empty metadata key"},
		{"wrong size", func(w *Writer) { w.AddTensor("t", []uint64{2, 2}, []float32{1}) }, "has dims [2 2] (4 elements) but 1 values"},
		{"duplicate tensor", func(w *Writer) {
			w.AddTensor("t", []uint64{1}, []float32{1})
			w.AddTensor("t", []uint64{1}, []float32{1})
		}, `tensor name "t" empty or used twice`},
		{"no dims", func(w *Writer) { w.AddTensor("t", nil, nil) }, "has 0 dimensions"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := &Writer{}
			tt.build(w)
			_, err := w.WriteTo(&bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.expect) {
				t.Errorf("got %v, want an error containing %q", err, tt.expect)
			}
			path := filepath.Join(t.TempDir(), "x.gguf")
			if err := w.WriteFile(path); err == nil {
				t.Error("WriteFile succeeded")
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("a file was left at %s", path)
			}
		})
	}
}

// TestTinyLlama checks the generated model's metadata (the keys llama.cpp needs to load
// it), its shape, its vocabulary, and that it is the same byte for byte for one seed.
func TestTinyLlama(t *testing.T) {
	dir := t.TempDir()
	m := DefaultTinyLlama()
	a, b := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf")
	if err := WriteTinyLlama(a, m); err != nil {
		t.Fatal(err)
	}
	if err := WriteTinyLlama(b, m); err != nil {
		t.Fatal(err)
	}
	m2 := m
	m2.Seed = 2
	c := filepath.Join(dir, "c.gguf")
	if err := WriteTinyLlama(c, m2); err != nil {
		t.Fatal(err)
	}
	ra, _ := os.ReadFile(a)
	rb, _ := os.ReadFile(b)
	rc, _ := os.ReadFile(c)
	if !bytes.Equal(ra, rb) {
		t.Error("the same description gave two different files")
	}
	if bytes.Equal(ra, rc) || len(ra) != len(rc) {
		t.Error("another seed should change the weights, and only them")
	}

	f, err := parser.ParseGGUFFile(a)
	if err != nil {
		t.Fatal(err)
	}
	kv := f.Header.MetadataKV
	for _, k := range []string{
		"general.architecture", "llama.context_length", "llama.embedding_length", "llama.block_count",
		"llama.feed_forward_length", "llama.attention.head_count", "llama.attention.layer_norm_rms_epsilon",
		"tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
		"tokenizer.chat_template",
	} {
		if _, ok := kv.Get(k); !ok {
			t.Errorf("metadata key %s missing", k)
		}
	}
	arch := f.Architecture()
	if arch.Architecture != "llama" || arch.EmbeddingLength != 64 || arch.AttentionHeadCount != 4 ||
		arch.BlockCount != 2 || arch.FeedForwardLength[0] != 128 {
		t.Errorf("architecture: %+v", arch)
	}
	toks, _ := kv.Get("tokenizer.ggml.tokens")
	tokens := toks.ValueArray().ValuesString()
	types, _ := kv.Get("tokenizer.ggml.token_type")
	tt := types.ValueArray().ValuesInt32()
	nbytes := 0
	for i, tok := range tokens {
		if tt[i] == TokenByte {
			nbytes++
			if len(tok) != 6 || !strings.HasPrefix(tok, "<0x") {
				t.Errorf("byte token %d is %q", i, tok)
			}
		}
	}
	if nbytes != 256 || tokens[3] != "<0x00>" || tokens[258] != "<0xFF>" {
		t.Errorf("%d byte tokens, 3: %q, 258: %q", nbytes, tokens[3], tokens[258])
	}
	if tokens[TinyBOSID] != "<s>" || tokens[TinyEOSID] != "</s>" || !slices.Contains(tokens, "▁hello") {
		t.Error("special or word tokens missing")
	}
	if got := len(f.TensorInfos); got != 3+9*2 {
		t.Errorf("%d tensors, want %d", got, 3+9*2)
	}

	nb := m
	nb.NoByteTokens = true
	w, err := nb.Build()
	if err != nil {
		t.Fatal(err)
	}
	toks2, _, types2 := nb.Vocab()
	if slices.Contains(types2, TokenByte) || slices.Contains(toks2, "<0x41>") {
		t.Error("NoByteTokens left byte tokens in")
	}
	if w == nil {
		t.Error("no writer")
	}
	bad := m
	bad.HeadCount = 5
	if _, err := bad.Build(); err == nil {
		t.Error("5 heads for n_embd 64 accepted")
	}
}
