package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/limitgraph/limit/internal/clip"
)

// model is a loaded llama.cpp model.
type model struct {
	m     llama.Model
	vocab llama.Vocab
	info  *modelInfo
	// eog lists the end-of-generation tokens, for ignore_eos.
	eog []llama.Token
	// maxPiece is the most bytes of text one token stands for (control tokens
	// included), or 0 when the tokenizer may drop text (see minTokens).
	maxPiece int
	// specials are the tokens llama.cpp matches as a whole before tokenizing (control,
	// unknown and user-defined ones), longest text first, for chat prompts.
	specials []specialToken
	// bos and eos are added to a prompt when addBOS and addEOS say so.
	bos, eos       llama.Token
	addBOS, addEOS bool
}

// loadModel loads the model file into llama.cpp. The file was checked by inspectModel.
func loadModel(path string, info *modelInfo) (*model, error) {
	mark := library.logs.mark()
	p := llama.ModelDefaultParams()
	m, err := llama.ModelLoadFromFile(path, p)
	if err != nil {
		return nil, fmt.Errorf("llama.cpp could not load model %s: %s", path, library.logs.since(mark))
	}
	md := &model{m: m, vocab: llama.ModelGetVocab(m), info: info}
	md.bos, md.eos = llama.VocabBOS(md.vocab), llama.VocabEOS(md.vocab)
	md.addBOS = llama.VocabGetAddBOS(md.vocab) && md.bos != llama.TokenNull
	md.addEOS = llama.VocabGetAddEOS(md.vocab) && md.eos != llama.TokenNull
	n := llama.VocabNTokens(md.vocab)
	buf := make([]byte, 256)
	for i := range n {
		if llama.VocabIsEOG(md.vocab, llama.Token(i)) {
			md.eog = append(md.eog, llama.Token(i))
		}
		if attr := llama.VocabGetAttr(md.vocab, llama.Token(i)); isSpecialAttr(attr) {
			if text := llama.VocabGetText(md.vocab, llama.Token(i)); text != "" {
				md.specials = append(md.specials, specialToken{id: llama.Token(i), text: text, attr: attr})
			}
		}
		if l := int(llama.TokenToPiece(md.vocab, llama.Token(i), buf, 0, true)); l < 0 {
			md.maxPiece = max(md.maxPiece, -l) // the piece did not fit buf: -l is its length
		} else {
			md.maxPiece = max(md.maxPiece, l)
		}
	}
	sort.SliceStable(md.specials, func(a, b int) bool { return len(md.specials[a].text) > len(md.specials[b].text) })
	// SentencePiece and byte-level BPE spell every byte of the text with some token;
	// other tokenizers (UGM, WPM) normalise it and may drop some.
	if info.Tokenizer != "llama" && info.Tokenizer != "gpt2" {
		md.maxPiece = 0
	}
	return md, nil
}

// minTokens is a lower bound of the tokens text of n bytes becomes: no token stands for
// more than maxPiece of them. It lets an input far too long for the context be refused
// without tokenizing it, which llama.cpp does at about a second per megabyte, beyond
// the reach of a timeout or a cancellation.
func (md *model) minTokens(n int) int {
	if md.maxPiece <= 0 {
		return 0
	}
	return (n + md.maxPiece - 1) / md.maxPiece
}

// free releases the model.
func (md *model) free() {
	if md != nil && md.m != 0 {
		_ = llama.ModelFree(md.m)
		md.m = 0
	}
}

// tokenize turns text into tokens. special adds the BOS token when the model wants one;
// parseSpecial lets control-token text (e.g. "<|im_start|>") become control tokens,
// which only a chat template's output may do.
func (md *model) tokenize(text string, addSpecial, parseSpecial bool) []llama.Token {
	return llama.Tokenize(md.vocab, text, addSpecial, parseSpecial)
}

// piece returns the bytes a token stands for (control tokens give none).
func (md *model) piece(tok llama.Token, buf []byte) []byte {
	n := llama.TokenToPiece(md.vocab, tok, buf[:cap(buf)], 0, false)
	if n < 0 {
		buf = make([]byte, -n)
		n = llama.TokenToPiece(md.vocab, tok, buf, 0, false)
	}
	if n <= 0 {
		return buf[:0]
	}
	return buf[:n]
}

// llamaContext is a session's llama.cpp context: its KV cache and compute buffers.
type llamaContext struct {
	ctx    llama.Context
	nCtx   int
	nBatch int
}

// newContext creates a context for md.
func newContext(md *model, set settings) (*llamaContext, error) {
	p := llama.ContextDefaultParams()
	p.NCtx = uint32(set.contextSize)
	p.NBatch = uint32(set.batchSize)
	p.NUbatch = uint32(set.batchSize)
	p.NSeqMax = 1
	p.NThreads = int32(set.threads)
	p.NThreadsBatch = int32(set.threads)
	mark := library.logs.mark()
	c, err := llama.InitFromModel(md.m, p)
	if err != nil {
		return nil, fmt.Errorf("llama.cpp could not create a context of %d tokens: %s", set.contextSize, library.logs.since(mark))
	}
	return &llamaContext{ctx: c, nCtx: int(llama.NCtx(c)), nBatch: set.batchSize}, nil
}

// free releases the context.
func (lc *llamaContext) free() {
	if lc != nil && lc.ctx != 0 {
		_ = llama.Free(lc.ctx)
		lc.ctx = 0
	}
}

// genRequest is one generation.
type genRequest struct {
	prompt    []llama.Token
	sampling  sampling
	stop      []string
	ignoreEOS bool
	// maxBytes bounds the output; 0 means no bound.
	maxBytes int
}

// genResult is what a generation produced. finish is "stop" (end of generation token or
// stop string), "length" (max_tokens, the context or the output limit), or empty when
// the generation was interrupted (err tells why).
type genResult struct {
	text       string
	completion int
	finish     string
	truncated  bool
	seed       uint32
	promptTime time.Duration
	genTime    time.Duration
	firstToken time.Duration
}

// errDecode wraps a failure of llama_decode.
var errDecode = errors.New("llama_decode failed")

// generate evaluates the prompt and samples up to req.sampling.MaxTokens tokens, calling
// emit with the text of each (text held back until it is valid UTF-8 and cannot be the
// start of a stop string). It returns what was produced so far when ctx ends, together
// with ctx's cause.
func (lc *llamaContext) generate(ctx context.Context, md *model, req genRequest, emit func(text string, id llama.Token) error) (res genResult, err error) {
	start := time.Now()
	mem, err := llama.GetMemory(lc.ctx)
	if err != nil {
		return res, err
	}
	if err := llama.MemoryClear(mem, true); err != nil {
		return res, err
	}

	chain, seed := newSampler(md, req)
	defer llama.SamplerFree(chain)
	res.seed = seed

	// Prompt, in batches: cancellation is seen between batches.
	for i := 0; i < len(req.prompt); i += lc.nBatch {
		if err := context.Cause(ctx); err != nil {
			return res, err
		}
		j := min(i+lc.nBatch, len(req.prompt))
		if rc, _ := llama.Decode(lc.ctx, llama.BatchGetOne(req.prompt[i:j])); rc != 0 {
			return res, fmt.Errorf("%w on the prompt (code %d)", errDecode, rc)
		}
	}
	res.promptTime = time.Since(start)

	var (
		out     strings.Builder
		stream  utf8Stream
		emitted int // bytes of out already emitted
		buf     = make([]byte, 0, 64)
		one     = make([]llama.Token, 1)
		last    llama.Token
	)
	maxTokens := req.sampling.MaxTokens
	genStart := time.Now()
	defer func() { res.genTime = time.Since(genStart); res.text = out.String() }()
	flush := func(final bool, id llama.Token) error {
		text := out.String()
		safe := len(text)
		if !final {
			safe -= stopPrefixLen(text[emitted:], req.stop)
		}
		if safe <= emitted {
			return nil
		}
		chunk := text[emitted:safe]
		emitted = safe
		return emit(chunk, id)
	}
	for res.completion < maxTokens {
		if err := context.Cause(ctx); err != nil {
			return res, err
		}
		tok := llama.SamplerSample(chain, lc.ctx, -1)
		if res.completion == 0 {
			res.firstToken = time.Since(start)
		}
		if !req.ignoreEOS && llama.VocabIsEOG(md.vocab, tok) {
			res.finish = "stop"
			break
		}
		res.completion++
		last = tok
		out.WriteString(stream.write(md.piece(tok, buf)))
		if cut, ok := findStop(out.String(), emitted, req.stop); ok {
			text := out.String()[:cut]
			out.Reset()
			out.WriteString(text)
			res.finish = "stop"
			if err := flush(true, tok); err != nil {
				return res, err
			}
			return res, nil
		}
		if req.maxBytes > 0 && out.Len() >= req.maxBytes {
			text := clip.Prefix(out.String(), req.maxBytes)
			out.Reset()
			out.WriteString(text)
			res.finish, res.truncated = "length", true
			return res, flush(true, tok)
		}
		if err := flush(false, tok); err != nil {
			return res, err
		}
		if res.completion == maxTokens {
			break
		}
		one[0] = tok
		if rc, _ := llama.Decode(lc.ctx, llama.BatchGetOne(one)); rc != 0 {
			return res, fmt.Errorf("%w after %d generated tokens (code %d)", errDecode, res.completion, rc)
		}
	}
	if res.finish == "" {
		res.finish = "length"
	}
	out.WriteString(stream.flush())
	return res, flush(true, last)
}

// newSampler builds the sampler chain: optional EOG ban, then greedy at temperature 0,
// else top-k, top-p, temperature and a seeded draw. It returns the seed used.
func newSampler(md *model, req genRequest) (llama.Sampler, uint32) {
	s := req.sampling
	chain := llama.SamplerChainInit(llama.SamplerChainDefaultParams())
	if req.ignoreEOS && len(md.eog) > 0 {
		bias := make([]llama.LogitBias, len(md.eog))
		for i, t := range md.eog {
			bias[i] = llama.LogitBias{Token: t, Bias: float32(math.Inf(-1))}
		}
		llama.SamplerChainAdd(chain, llama.SamplerInitLogitBias(llama.VocabNTokens(md.vocab), int32(len(bias)), &bias[0]))
	}
	var seed uint32
	if s.Seed >= 0 {
		seed = uint32(s.Seed)
	} else {
		seed = rand.Uint32N(math.MaxUint32)
	}
	if s.Temperature == 0 {
		llama.SamplerChainAdd(chain, llama.SamplerInitGreedy())
		return chain, seed
	}
	if s.TopK > 0 {
		llama.SamplerChainAdd(chain, llama.SamplerInitTopK(int32(s.TopK)))
	}
	if s.TopP < 1 {
		llama.SamplerChainAdd(chain, llama.SamplerInitTopP(float32(s.TopP), 1))
	}
	llama.SamplerChainAdd(chain, llama.SamplerInitTemp(float32(s.Temperature)))
	llama.SamplerChainAdd(chain, llama.SamplerInitDist(seed))
	return chain, seed
}

// findStop looks for a stop string in text that ends after from (so a stop string is
// found as soon as its last byte arrives) and returns where the text is cut.
func findStop(text string, from int, stops []string) (int, bool) {
	best := -1
	for _, s := range stops {
		if s == "" {
			continue
		}
		lo := max(0, from-len(s)+1)
		if i := strings.Index(text[lo:], s); i >= 0 && (best < 0 || lo+i < best) {
			best = lo + i
		}
	}
	return best, best >= 0
}

// stopPrefixLen is the length of the longest end of text that is the start of a stop
// string: that text is held back until it is known not to be one.
func stopPrefixLen(text string, stops []string) int {
	n := 0
	for _, s := range stops {
		for l := min(len(s)-1, len(text)); l > n; l-- {
			if strings.HasSuffix(text, s[:l]) {
				n = l
				break
			}
		}
	}
	return n
}

// utf8Stream turns the byte pieces of tokens into valid UTF-8 text. A byte token may
// carry one byte of a multi-byte character: it is held until the character is complete.
// Bytes that can never form a character become U+FFFD.
type utf8Stream struct {
	pending []byte
}

// write adds bytes and returns the text that is complete.
func (s *utf8Stream) write(b []byte) string {
	s.pending = append(s.pending, b...)
	var out strings.Builder
	i := 0
	for i < len(s.pending) {
		r, size := utf8.DecodeRune(s.pending[i:])
		if r == utf8.RuneError && size <= 1 {
			if !utf8.FullRune(s.pending[i:]) {
				break // the start of a character whose rest has not come yet
			}
			out.WriteRune(utf8.RuneError)
			i++
			continue
		}
		out.Write(s.pending[i : i+size])
		i += size
	}
	s.pending = append(s.pending[:0], s.pending[i:]...)
	return out.String()
}

// flush returns what is still held, as replacement characters.
func (s *utf8Stream) flush() string {
	if len(s.pending) == 0 {
		return ""
	}
	s.pending = s.pending[:0]
	return string(utf8.RuneError)
}
