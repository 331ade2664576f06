package crashtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

// WriterEnv names the environment variable that makes a binary run WriterMain: it holds
// the path of the job file the harness wrote.
const WriterEnv = "LIMIT_CRASHTEST_JOB"

// Writer exit codes.
const (
	exitViolation = 2 // the store broke a promise; the line before says which
	exitStopped   = 3 // every writing goroutine hit an error (the plugin died)
	exitSetup     = 4 // the plugin could not be started or configured
	exitTimeout   = 5 // nobody killed the writer within its job's MaxRun
)

// Lines the writer prints besides acknowledgements.
const (
	linePID       = "pid"       // pid N: the plugin process
	lineVerified  = "verified"  // verified ITEMS BYTES UNACKED
	lineViolation = "violation" // violation TEXT
	lineWriting   = "writing"   // the writers are starting
	lineError     = "error"     // error TEXT: a write failed; its goroutine stops
)

// job is what the harness tells one writer process.
type job struct {
	Backend   Backend `json:"backend"`
	Namespace string  `json:"namespace"`
	Round     int     `json:"round"`
	Writers   int     `json:"writers"`
	Seed      uint64  `json:"seed"`
	// Verify lists the rounds to check before writing; nil with VerifyAll false means
	// none (the first round).
	Verify    []int   `json:"verify"`
	VerifyAll bool    `json:"verify_all"`
	Ledger    *Ledger `json:"ledger"`
	// MaxRun bounds how long the writer writes if nobody kills it.
	MaxRun time.Duration `json:"max_run"`
}

// lineWriter prints whole lines to stdout, one write(2) each, so a kill can cut at most
// the line being written.
type lineWriter struct {
	mu sync.Mutex
}

func (w *lineWriter) printf(format string, args ...any) {
	line := fmt.Sprintf(format, args...) + "\n"
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = os.Stdout.WriteString(line)
}

// WriterMain is the writer process: it starts the plugin named by the job in WriterEnv,
// checks the store against the ledger, then writes and acknowledges until it is killed.
// It never returns.
func WriterMain() {
	out := &lineWriter{}
	fail := func(code int, format string, args ...any) {
		out.printf(format, args...)
		os.Exit(code)
	}
	raw, err := os.ReadFile(os.Getenv(WriterEnv))
	if err != nil {
		fail(exitSetup, "%s cannot read the job: %v", lineError, err)
	}
	var j job
	if err := json.Unmarshal(raw, &j); err != nil {
		fail(exitSetup, "%s cannot parse the job: %v", lineError, err)
	}
	ctx := context.Background()
	s, pid, stop, err := launch(ctx, j.Backend)
	if err != nil {
		fail(exitSetup, "%s %s", lineError, oneLine(err.Error()))
	}
	defer stop()
	out.printf("%s %d", linePID, pid)

	if j.VerifyAll || len(j.Verify) > 0 {
		rounds := j.Verify
		if j.VerifyAll {
			rounds = nil
		}
		c, err := j.Ledger.Verify(ctx, s, j.Namespace, rounds)
		if err != nil {
			fail(exitSetup, "%s verify: %s", lineError, oneLine(err.Error()))
		}
		if len(c.Violations) > 0 {
			for _, v := range c.Violations {
				out.printf("%s %s", lineViolation, v)
			}
			os.Exit(exitViolation)
		}
		out.printf("%s %d %d %d", lineVerified, c.Items, c.Bytes, c.Unacked)
	}

	// Batches put some of their keys in a second namespace where the backend takes batch
	// operations in other namespaces: atomicity across namespaces is checked too.
	multiNS, err := storage.TakesBatchNamespaces(ctx, s)
	if err != nil {
		fail(exitSetup, "%s capabilities: %s", lineError, oneLine(err.Error()))
	}
	out.printf("%s", lineWriting)
	var wg sync.WaitGroup
	for g := range max(j.Writers, 1) {
		w := &writerLoop{s: s, out: out, ns: j.Namespace, round: j.Round, g: g, multiNS: multiNS,
			rng: rand.New(rand.NewPCG(j.Seed, uint64(j.Round)<<16|uint64(g)))}
		wg.Go(func() { w.run(ctx) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	maxRun := j.MaxRun
	if maxRun <= 0 {
		maxRun = time.Minute
	}
	select {
	case <-done:
		os.Exit(exitStopped)
	case <-time.After(maxRun):
		out.printf("%s nobody killed the writer within %v", lineError, maxRun)
		os.Exit(exitTimeout)
	}
}

// oneLine folds a message onto one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// writerLoop is one writing goroutine. It owns its keys (prefix r<round>/g<g>/), so it
// knows what each of them must hold.
type writerLoop struct {
	s     storage.Storage
	out   *lineWriter
	ns    string
	round int
	g     int
	rng   *rand.Rand
	// multiNS: batches may put keys in OtherNamespace(ns) too.
	multiNS bool

	seq        int
	puts       []string // acknowledged lone puts, not deleted since
	counterVer uint32
	casVer     uint32
	casCur     []byte
}

func (w *writerLoop) key(kind string, n int) string {
	return fmt.Sprintf("%sg%02d/%s%06d", roundPrefix(w.round), w.g, kind, n)
}

// payload returns filler bytes of a random size: mostly small, sometimes tens of KiB,
// rarely a MiB, so writes span one page to many.
func (w *writerLoop) payload() []byte {
	var n int
	switch p := w.rng.IntN(1000); {
	case p < 2:
		n = 256<<10 + w.rng.IntN(768<<10)
	case p < 20:
		n = 4<<10 + w.rng.IntN(60<<10)
	default:
		n = w.rng.IntN(600)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(w.rng.Uint32())
	}
	return b
}

// run writes until a write fails.
func (w *writerLoop) run(ctx context.Context) {
	for {
		w.seq++
		var err error
		switch p := w.rng.IntN(100); {
		case p < 40:
			err = w.put(ctx)
		case p < 60:
			err = w.batch(ctx)
		case p < 75:
			err = w.counter(ctx)
		case p < 90:
			err = w.cas(ctx)
		default:
			err = w.del(ctx)
		}
		if err != nil {
			w.out.printf("%s %s", lineError, oneLine(err.Error()))
			return
		}
	}
}

func (w *writerLoop) put(ctx context.Context) error {
	k := w.key("p", w.seq)
	if err := w.s.Put(ctx, w.ns, []byte(k), encode(record{Key: k}, w.payload())); err != nil {
		return fmt.Errorf("put %s: %w", k, err)
	}
	w.out.printf("%s %s", ackPut, k)
	w.puts = append(w.puts, k)
	return nil
}

// batch puts 2 to 8 new keys and, half the time, deletes one of the goroutine's earlier
// lone puts, at a random place among the puts.
func (w *writerLoop) batch(ctx context.Context) error {
	id := w.key("b", w.seq)
	n := 2 + w.rng.IntN(7)
	victim := ""
	if len(w.puts) > 0 && w.rng.IntN(2) == 0 {
		i := w.rng.IntN(len(w.puts))
		victim = w.puts[i]
		w.puts = append(w.puts[:i], w.puts[i+1:]...)
	}
	ops := make([]storage.Op, 0, n+1)
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprintf("%s/%d", id, i)
		rec := record{Key: keys[i], Batch: id, BatchSize: n, Victim: victim}
		op := storage.Op{Kind: storage.OpPut, Key: []byte(keys[i]), Value: encode(rec, w.payload())}
		if w.multiNS && w.rng.IntN(2) == 0 {
			op.Namespace = OtherNamespace(w.ns)
		}
		ops = append(ops, op)
	}
	if victim != "" {
		at := w.rng.IntN(len(ops) + 1)
		ops = append(ops[:at], append([]storage.Op{{Kind: storage.OpDelete, Key: []byte(victim)}}, ops[at:]...)...)
	}
	if err := w.s.Batch(ctx, w.ns, ops); err != nil {
		return fmt.Errorf("batch %s: %w", id, err)
	}
	if victim != "" {
		w.out.printf("%s %s %s", ackBatch, strings.Join(keys, ","), victim)
	} else {
		w.out.printf("%s %s", ackBatch, strings.Join(keys, ","))
	}
	return nil
}

// counter overwrites the goroutine's counter key with the next version.
func (w *writerLoop) counter(ctx context.Context) error {
	k := w.key("c", 0)
	v := w.counterVer + 1
	if err := w.s.Put(ctx, w.ns, []byte(k), encode(record{Key: k, Version: v}, w.payload())); err != nil {
		return fmt.Errorf("put counter %s version %d: %w", k, v, err)
	}
	w.counterVer = v
	w.out.printf("%s %s %d", ackVersion, k, v)
	return nil
}

// cas moves the goroutine's compare-and-swap key to the next version. The goroutine is
// the key's only writer, so a swap that does not happen is a violation.
func (w *writerLoop) cas(ctx context.Context) error {
	k := w.key("s", 0)
	v := w.casVer + 1
	val := encode(record{Key: k, Version: v}, w.payload())
	req := storage.CASRequest{Namespace: w.ns, Key: []byte(k), Value: val}
	if w.casVer > 0 {
		req.ExpectPresent, req.Expected = true, w.casCur
	}
	res, err := w.s.CompareAndSwap(ctx, req)
	if err != nil {
		return fmt.Errorf("compare-and-swap %s to version %d: %w", k, v, err)
	}
	if !res.Swapped {
		w.out.printf("%s compare-and-swap of %s from version %d did not swap: the key holds something else (present=%v, %d bytes)",
			lineViolation, k, w.casVer, res.Present, len(res.Current))
		os.Exit(exitViolation)
	}
	w.casVer, w.casCur = v, val
	w.out.printf("%s %s %d", ackVersion, k, v)
	return nil
}

// del deletes one of the goroutine's earlier lone puts, announcing the intent first.
func (w *writerLoop) del(ctx context.Context) error {
	if len(w.puts) == 0 {
		return w.put(ctx)
	}
	i := w.rng.IntN(len(w.puts))
	k := w.puts[i]
	w.puts = append(w.puts[:i], w.puts[i+1:]...)
	w.out.printf("%s %s", ackIntentDel, k)
	existed, err := w.s.Delete(ctx, w.ns, []byte(k))
	if err != nil {
		return fmt.Errorf("delete %s: %w", k, err)
	}
	if !existed {
		w.out.printf("%s delete of %s, an acknowledged put, found no key", lineViolation, k)
		os.Exit(exitViolation)
	}
	w.out.printf("%s %s", ackDel, k)
	return nil
}

// launch starts and configures the backend's plugin the way the host does, and returns
// its client, its process id and a function that stops it.
func launch(ctx context.Context, b Backend) (storage.Storage, int, func(), error) {
	pc := base.NewClient(base.LaunchConfig{
		Path: b.Plugin, Kind: base.KindStorage, Plugins: storage.PluginSet(), Env: b.Env,
	})
	raw, err := base.Dispense(ctx, pc, base.KindStorage)
	if err != nil {
		pc.Kill()
		return nil, 0, nil, fmt.Errorf("start %s: %w", b.Plugin, err)
	}
	s, ok := raw.(storage.Storage)
	if !ok {
		pc.Kill()
		return nil, 0, nil, fmt.Errorf("%s is not a storage plugin", b.Plugin)
	}
	cfg := b.Config
	if len(cfg) == 0 {
		cfg = json.RawMessage("{}")
	}
	if ds := s.Configure(ctx, base.ConfigureRequest{Config: cfg, DataDir: b.DataDir}); ds.HasErrors() {
		pc.Kill()
		return nil, 0, nil, fmt.Errorf("configure %s: %w", b.Name, ds.Err())
	}
	return s, pc.ReattachConfig().Pid, pc.Kill, nil
}
