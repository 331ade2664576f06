// Command testmodel writes the tiny random-weight llama model the tests and benchmarks
// use (see internal/gguf.DefaultTinyLlama), by default to build/testdata/tiny-llama.gguf.
// `make testmodel` runs it.
//
//	go run ./internal/cmd/testmodel [-o path] [-seed n] [-no-byte-tokens]
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/limitgraph/limit/internal/gguf"
)

func main() {
	out := flag.String("o", "build/testdata/tiny-llama.gguf", "output file")
	seed := flag.Uint64("seed", 1, "seed of the random weights")
	noBytes := flag.Bool("no-byte-tokens", false, "leave the 256 byte tokens out of the vocabulary (llama.cpp aborts on text it cannot spell)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "testmodel: unexpected argument %q\n", flag.Arg(0))
		flag.Usage()
		os.Exit(2)
	}
	m := gguf.DefaultTinyLlama()
	m.Seed = *seed
	m.NoByteTokens = *noBytes
	if err := gguf.WriteTinyLlama(*out, m); err != nil {
		fmt.Fprintln(os.Stderr, "testmodel:", err)
		os.Exit(1)
	}
	fi, err := os.Stat(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testmodel:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s (%d bytes): llama, n_embd %d, %d heads, %d layers, n_ff %d\n",
		*out, fi.Size(), m.EmbeddingLength, m.HeadCount, m.BlockCount, m.FeedForwardLength)
}
