package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/limitgraph/limit/sdk/governance"
)

// slowCode is ~1.5 MB of dense Python: parsing it takes seconds, well over the 1s timeout
// the tests below configure, so each analysis of it holds the one analyzer until then.
var slowCode = strings.Repeat("x = [1, 2, 3] + [4, 5, 6]\n", 60000)

// fairConfig has one analyzer, so sessions contend for it.
const fairConfig = `{"workers": 1, "timeout": "1s", "max_waiting_per_session": 3}`

// completion is one evaluation's outcome, in the order outcomes arrived.
type completion struct {
	name string
	fs   []governance.Finding
	err  error
}

// recorder runs evaluations in goroutines and records the order they finish in.
type recorder struct {
	r    governance.Rule
	wg   sync.WaitGroup
	mu   sync.Mutex
	done []completion
	// each receives every completion as it is recorded.
	each chan completion
}

func newRecorder(r governance.Rule) *recorder {
	return &recorder{r: r, each: make(chan completion, 64)}
}

func (rec *recorder) start(name, session, code string) {
	code += "# " + name + "\n" // each its own code: none is answered from the analysis cache
	rec.wg.Add(1)
	go func() {
		defer rec.wg.Done()
		fs, err := rec.r.Evaluate(context.Background(), governance.EvaluateRequest{
			Stage: governance.StagePre, SessionID: session, ContentType: "code/python", Content: code})
		c := completion{name: name, fs: fs, err: err}
		rec.mu.Lock()
		rec.done = append(rec.done, c)
		rec.mu.Unlock()
		rec.each <- c
	}()
}

// wait waits for every evaluation and returns them in the order they finished.
func (rec *recorder) wait() []completion {
	rec.wg.Wait()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.done)
}

// after counts the completions of names starting with prefix recorded after name.
func after(done []completion, name, prefix string) int {
	i := slices.IndexFunc(done, func(c completion) bool { return c.name == name })
	n := 0
	for _, c := range done[i+1:] {
		if strings.HasPrefix(c.name, prefix) {
			n++
		}
	}
	return n
}

// TestFairnessInProcess floods the one analyzer with slow code from session A (one
// running, three queued: the most max_waiting_per_session allows, so a fifth is refused),
// then sends session B's small script: B must finish before every A analysis that was
// queued when it arrived, and with its findings.
func TestFairnessInProcess(t *testing.T) {
	r := configured(t, fairConfig)
	slots := r.cur.Load().pool.slots
	rec := newRecorder(r)
	rec.start("A-0", "A", slowCode)
	waitFor(t, "A-0 running", func() bool { st, _ := slots.stats("A"); return st.Held == 1 })
	for i := 1; i <= 3; i++ {
		rec.start(fmt.Sprintf("A-%d", i), "A", slowCode)
		waitFor(t, "A queued", func() bool { return waiting(slots, "A") == i })
	}
	_, err := r.Evaluate(context.Background(), governance.EvaluateRequest{
		Stage: governance.StagePre, SessionID: "A", ContentType: "code/python", Content: slowCode + "# A-4\n"})
	if err == nil || !strings.Contains(err.Error(), "too many code analyses waiting") {
		t.Fatalf("A's fifth analysis: got %v, want a too-many-waiting error", err)
	}
	rec.start("B", "B", "import os\nos.system('id')\n")
	waitFor(t, "B queued", func() bool { return waiting(slots, "B") == 1 })
	queuedA := waiting(slots, "A") // A analyses B arrived behind
	done := rec.wait()
	var order []string
	for _, c := range done {
		order = append(order, c.name)
	}
	t.Logf("completion order %v; %d of A's were queued when B arrived", order, queuedA)
	if queuedA == 0 {
		t.Fatal("A had nothing queued when B arrived: the test did not contend")
	}
	if n := after(done, "B", "A-"); n < queuedA {
		t.Errorf("completion order %v: B finished before %d of A's analyses, want all %d queued ahead of it", order, n, queuedA)
	}
	for _, c := range done {
		if c.name == "B" && (c.err != nil || len(c.fs) != 1 || c.fs[0].RuleID != "codesafety.B605") {
			t.Errorf("B: findings %+v, error %v; want one B605 finding", c.fs, c.err)
		}
		if c.name != "B" && (c.err == nil || !strings.Contains(c.err.Error(), "took longer than 1s")) {
			t.Errorf("%s: error %v, want the timeout", c.name, c.err)
		}
	}
}

// TestFairnessPlugin does the same through the plugin process: session A sends more
// slow analyses at once than one running and max_waiting_per_session waiting, the excess
// get the clear error over gRPC, and B's request sent after them finishes before some of
// A's accepted ones.
func TestFairnessPlugin(t *testing.T) {
	r := launch(t, fairConfig)
	rec := newRecorder(r)
	const flood = 10
	for i := range flood {
		rec.start(fmt.Sprintf("A-%d", i), "A", slowCode)
	}
	// A refusal comes at once and means A has its most waiting: send B then.
	for range flood {
		if c := <-rec.each; c.err != nil && strings.Contains(c.err.Error(), "too many code analyses waiting") {
			break
		}
	}
	rec.start("B", "B", "eval(input())\n")
	done := rec.wait()
	var order []string
	refused, timedOut := 0, 0
	for _, c := range done {
		order = append(order, c.name)
		switch {
		case c.name == "B":
			if c.err != nil || len(c.fs) != 1 || c.fs[0].RuleID != "codesafety.B307" {
				t.Errorf("B: findings %+v, error %v; want one B307 finding", c.fs, c.err)
			}
		case c.err != nil && strings.Contains(c.err.Error(), "too many code analyses waiting"):
			refused++
		case c.err != nil && strings.Contains(c.err.Error(), "took longer than 1s"):
			timedOut++
		default:
			t.Errorf("%s: findings %+v, error %v; want a refusal or the timeout", c.name, c.fs, c.err)
		}
	}
	t.Logf("completion order %v: %d refused, %d timed out", order, refused, timedOut)
	if refused == 0 || timedOut == 0 || refused+timedOut != flood {
		t.Errorf("%d refused and %d timed out of %d; want some of each", refused, timedOut, flood)
	}
	// Refusals finish at once, so count only A's analyses that ran.
	var ran []completion
	for _, c := range done {
		if c.err == nil || !strings.Contains(c.err.Error(), "too many code analyses waiting") {
			ran = append(ran, c)
		}
	}
	if n := after(ran, "B", "A-"); n == 0 {
		t.Errorf("completion order %v: B finished after every accepted analysis of A, want it served ahead of A's queue", order)
	}
}
