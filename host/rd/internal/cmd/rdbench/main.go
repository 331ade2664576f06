// Command rdbench times host/rd's conditional-gradient FGW against POT on identical
// random instances and prints one line per size: "n=800 go=1.92 pot=4.95 ratio=0.39"
// (seconds). It is what `make bench-rd` runs.
//
// For each size it generates an instance from a fixed seed (two sets of n points in the
// unit square with Euclidean distance structures, 8-dimensional uniform features with the
// squared Euclidean feature cost, uniform weights, alpha 0.5), writes the matrices as
// little-endian float64 files, times POT on them through scripts/rd/bench_pot.py, then
// times rd.FGW on the same matrices. Values and iteration counts are compared; a
// mismatch makes the command fail. Details (values, iterations, memory) go to stderr.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/limitgraph/limit/host/rd"
	"gonum.org/v1/gonum/mat"
)

func main() {
	sizes := flag.String("sizes", "100,200,400,800", "comma-separated instance sizes")
	python := flag.String("python", "/usr/bin/python3", "interpreter with POT installed")
	script := flag.String("script", "scripts/rd/bench_pot.py", "POT side of the benchmark")
	seed := flag.Uint64("seed", 1, "instance seed")
	flag.Parse()
	if err := run(*sizes, *python, *script, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "rdbench:", err)
		os.Exit(1)
	}
}

type potResult struct {
	Seconds    float64 `json:"seconds"`
	Value      float64 `json:"value"`
	Iterations int     `json:"iterations"`
	Warning    string  `json:"emd_warning"`
}

func run(sizes, python, script string, seed uint64) error {
	dir, err := os.MkdirTemp("", "rdbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	mismatch := false
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			return fmt.Errorf("bad size %q", s)
		}
		reps := 1
		if n <= 200 {
			reps = 5
		}
		c1, c2, m := instance(n, seed)
		for name, a := range map[string]*mat.Dense{"c1": c1, "c2": c2, "m": m} {
			if err := writeF64(filepath.Join(dir, name+".f64"), a); err != nil {
				return err
			}
		}
		var out bytes.Buffer
		cmd := exec.Command(python, script, dir, strconv.Itoa(n), strconv.Itoa(reps))
		cmd.Stdout = &out
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("POT side (%s %s): %w", python, script, err)
		}
		var pot potResult
		if err := json.Unmarshal(out.Bytes(), &pot); err != nil {
			return fmt.Errorf("POT side printed %q: %w", out.String(), err)
		}

		p := make([]float64, n)
		for i := range p {
			p[i] = 1 / float64(n)
		}
		cfg := rd.DefaultFGWConfig(rd.MethodCG)
		best := math.Inf(1)
		var res rd.FGWResult
		var allocated uint64
		for r := 0; r < reps; r++ {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			res, err = rd.FGW(c1, c2, m, p, p, cfg)
			el := time.Since(start).Seconds()
			runtime.ReadMemStats(&after)
			if err != nil {
				return err
			}
			allocated = after.TotalAlloc - before.TotalAlloc
			best = math.Min(best, el)
		}
		fmt.Printf("n=%d go=%.3g pot=%.3g ratio=%.2f\n", n, best, pot.Seconds, best/pot.Seconds)
		rel := math.Abs(res.Distance-pot.Value) / math.Abs(pot.Value)
		fmt.Fprintf(os.Stderr, "  n=%d value go=%.17g pot=%.17g rel=%.2g iterations go=%d pot=%d converged=%v allocated=%.1fMB (%.2f n×n float64 matrices)",
			n, res.Distance, pot.Value, rel, res.Iterations, pot.Iterations, res.Converged,
			float64(allocated)/1e6, float64(allocated)/float64(8*n*n))
		if pot.Warning != "" {
			fmt.Fprintf(os.Stderr, " pot-emd-warning=%q", pot.Warning)
		}
		fmt.Fprintln(os.Stderr)
		if rel > 1e-9 || res.Iterations != pot.Iterations {
			mismatch = true
		}
	}
	if mismatch {
		return fmt.Errorf("Go and POT disagree on at least one instance (see above)")
	}
	return nil
}

// instance builds the benchmark instance of size n.
func instance(n int, seed uint64) (c1, c2, m *mat.Dense) {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	structure := func() *mat.Dense {
		pts := make([]float64, 2*n)
		for i := range pts {
			pts[i] = r.Float64()
		}
		c := mat.NewDense(n, n, nil)
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				c.Set(i, j, math.Hypot(pts[2*i]-pts[2*j], pts[2*i+1]-pts[2*j+1]))
			}
		}
		return c
	}
	features := func() *mat.Dense {
		f := mat.NewDense(n, 8, nil)
		for i := 0; i < n; i++ {
			for d := 0; d < 8; d++ {
				f.Set(i, d, r.Float64())
			}
		}
		return f
	}
	c1, c2 = structure(), structure()
	m, err := rd.FeatureCost(features(), features())
	if err != nil {
		panic(err)
	}
	return c1, c2, m
}

func writeF64(path string, a *mat.Dense) error {
	r, c := a.Dims()
	buf := make([]byte, 0, 8*r*c)
	for i := 0; i < r; i++ {
		for _, v := range a.RawRowView(i) {
			buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(v))
		}
	}
	return os.WriteFile(path, buf, 0o600)
}
