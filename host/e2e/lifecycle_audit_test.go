package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	hostconfig "github.com/limitgraph/limit/host/config"
	hostdaemon "github.com/limitgraph/limit/host/daemon"
	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/client"
)

// The lifecycle audit: executions, deletes, runner pools and restarts raced against one
// another. Some tests run the host in this test process (so -race sees the session,
// execution and runner code), the others the real limitd binary (so its processes and
// file descriptors can be counted in /proc).

// lifecycleConfig is a config with the echo runner (its pool as given) and the keyword
// rule, whose plugins run from a directory of the test's own: their command lines tell
// them from other tests' processes.
func lifecycleConfig(t *testing.T, dataDir string, pool int) string {
	t.Helper()
	srcs := []string{
		testbin.Plugin(t, "storage-bolt"),
		testbin.TestPlugin(t, "runner-echo"),
		testbin.TestPlugin(t, "governance-keyword"),
	}
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, src := range srcs {
		if err := os.Symlink(src, filepath.Join(dir, filepath.Base(src))); err != nil {
			t.Fatal(err)
		}
	}
	return writeConfig(t, fmt.Sprintf(`host {
  listen     = "127.0.0.1:0"
  data_dir   = %q
  plugin_dir = %q
}
storage "bolt" {}
runner "echo" {
  pool = %d
}
governance {
  policy = "default"
  rule "keyword" {}
}
`, dataDir, dir, pool))
}

// host is a running host, in this process or as a limitd process.
type host struct {
	t   *testing.T
	url string
	c   *client.Client
	// pid is limitd's (0 in process); plugins is the directory its plugins run from.
	pid     int
	plugins string
	dataDir string
	d       *daemon
}

// startLimitd runs the limitd binary on cfg.
func startLimitd(t *testing.T, cfg string) *host {
	d := start(t, cfg)
	return &host{t: t, url: d.url, c: d.c, pid: d.cmd.Process.Pid, plugins: configValue(t, cfg, "plugin_dir"), dataDir: configValue(t, cfg, "data_dir"), d: d}
}

// startInProcess runs the host in this process on cfg.
func startInProcess(t *testing.T, cfg string) *host {
	t.Helper()
	src, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, diags := hostconfig.Parse(cfg, src, func(string) (string, bool) { return "", false })
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	d, diags := hostdaemon.Start(context.Background(), hostdaemon.Options{Config: c, Version: "test", Logger: hclog.NewNullLogger()})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = d.Shutdown(sctx)
	})
	url := "http://" + d.Addr()
	return &host{t: t, url: url, c: client.New(url), plugins: configValue(t, cfg, "plugin_dir"), dataDir: configValue(t, cfg, "data_dir")}
}

// configValue returns a quoted attribute of cfg's host block.
func configValue(t *testing.T, cfg, name string) string {
	t.Helper()
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == name && f[1] == "=" {
			return strings.Trim(f[2], `"`)
		}
	}
	t.Fatalf("no %s in config", name)
	return ""
}

// runnerProcs lists the running echo runner processes of this host.
func (h *host) runnerProcs() []proc {
	return mentioning(filepath.Join(h.plugins, "limit-runner-echo"))
}

// sessionRunners returns the pids /v1/health lists for session id (all sessions when
// id is empty) and the number of idle pool processes.
func (h *host) sessionRunners(id string) (pids []int, idle int) {
	h.t.Helper()
	hl, err := h.c.Health(ctx)
	if err != nil && hl == nil {
		h.t.Fatalf("health: %v", err)
	}
	for _, p := range hl.Plugins {
		switch {
		case p.Kind == "pool":
			if p.PID > 0 {
				idle++
			}
		case p.Kind == "runner" && (id == "" || p.Session == id):
			pids = append(pids, p.PID)
		}
	}
	return pids, idle
}

// eventually retries check until it returns "" or the time is up. The tests give it
// tens of seconds: what they wait for only has to happen, and a loaded machine is slow.
func eventually(t *testing.T, within time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fdCount(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

func (h *host) session(mc int) string {
	h.t.Helper()
	s, err := h.c.CreateSession(ctx, client.CreateSessionRequest{Name: "lifecycle", MaxConcurrency: mc})
	if err != nil {
		h.t.Fatal(err)
	}
	return s.ID
}

// outcome is how one execution ended.
type outcome struct {
	res     *client.ExecutionResult
	err     error
	status  int // HTTP status of an error answer
	retry   time.Duration
	elapsed time.Duration
}

func (h *host) exec(cctx context.Context, sid, input string, timeoutMS uint64) outcome {
	began := time.Now()
	res, err := h.c.Execute(cctx, sid, client.ExecuteRequest{Runner: "echo", Input: input, TimeoutMS: timeoutMS})
	o := outcome{res: res, err: err, elapsed: time.Since(began)}
	var ce *client.Error
	if errors.As(err, &ce) {
		o.status, o.retry = ce.Status, ce.RetryAfter
	}
	return o
}

// runInterval is when an execution ran, from its trace: its created entry is stamped
// when the run began (after its slot was taken), and the runner's duration ends before
// the slot is given back.
func (h *host) runInterval(traceID string) (time.Time, time.Time, bool) {
	h.t.Helper()
	v, err := h.c.GetTrace(ctx, traceID)
	if err != nil {
		h.t.Fatalf("trace %s: %v", traceID, err)
	}
	var began time.Time
	for _, e := range v.Provenance {
		switch e.Kind {
		case "created":
			began = e.Timestamp
		case "executed":
			var d struct {
				DurationUS int64 `json:"duration_us"`
			}
			if err := json.Unmarshal(e.Data, &d); err != nil {
				h.t.Fatal(err)
			}
			return began, began.Add(time.Duration(d.DurationUS) * time.Microsecond), true
		}
	}
	return time.Time{}, time.Time{}, false
}

// maxOverlap is the most intervals that overlap at one instant.
func maxOverlap(iv [][2]time.Time) int {
	type ev struct {
		at    time.Time
		delta int
	}
	var evs []ev
	for _, i := range iv {
		evs = append(evs, ev{i[0], 1}, ev{i[1], -1})
	}
	sort.Slice(evs, func(a, b int) bool {
		if evs[a].at.Equal(evs[b].at) {
			return evs[a].delta < evs[b].delta // an end before a start at the same instant
		}
		return evs[a].at.Before(evs[b].at)
	})
	n, most := 0, 0
	for _, e := range evs {
		n += e.delta
		most = max(most, n)
	}
	return most
}

// checkSlotsFree checks that the session has exactly mc free slots: mc executions run
// side by side (their traces overlap), and one more, meanwhile, is refused with 429.
// On a loaded machine the mc executions may start so far apart that they do not overlap,
// or the extra one may come before they all took their slots: each attempt that shows
// neither is made again, a few times. A slot not given back fails every attempt.
func (h *host) checkSlotsFree(sid string, mc int) {
	h.t.Helper()
	const attempts = 4
	for attempt := 1; ; attempt++ {
		overlap, refused := h.trySlotsFree(sid, mc)
		if overlap == mc && refused {
			return
		}
		if attempt < attempts {
			h.t.Logf("slot check, attempt %d: %d of %d executions overlapped, extra refused %v; again", attempt, overlap, mc, refused)
			continue
		}
		if overlap != mc {
			h.t.Fatalf("%d executions of 1.5 s ran at most %d at once in %d attempts: fewer than %d slots are free", mc, overlap, attempts, mc)
		}
		h.t.Fatalf("no execution beyond max_concurrency %d got 429 while %d ran, in %d attempts: more slots than that are free", mc, mc, attempts)
	}
}

// trySlotsFree runs mc executions of 1.5 s side by side and, while they run, more short
// ones with a deadline of 300 ms until one is refused with 429. It returns how many of
// the mc ran at once and whether an extra one was refused.
func (h *host) trySlotsFree(sid string, mc int) (int, bool) {
	h.t.Helper()
	var wg sync.WaitGroup
	outs := make([]outcome, mc)
	for i := range mc {
		wg.Add(1)
		go func() { defer wg.Done(); outs[i] = h.exec(ctx, sid, "sleep:1500", 20000) }()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	refused := false
extras:
	for !refused {
		select {
		case <-done:
			break extras
		case <-time.After(200 * time.Millisecond):
		}
		extra := h.exec(ctx, sid, "sleep:10", 300)
		switch {
		case extra.status == http.StatusTooManyRequests:
			refused = true
		case extra.err != nil || extra.res.Status != "ok":
			h.t.Fatalf("execution %d beyond max_concurrency %d: %+v %v, want 429 or, before the others took their slots, ok", mc+1, mc, extra.res, extra.err)
		}
	}
	<-done
	var iv [][2]time.Time
	for i, o := range outs {
		if o.err != nil || o.res.Status != "ok" {
			h.t.Fatalf("slot check %d/%d: %+v %v (a slot was not given back?)", i+1, mc, o.res, o.err)
		}
		if a, b, ok := h.runInterval(o.res.TraceID); ok {
			iv = append(iv, [2]time.Time{a, b})
		}
	}
	return maxOverlap(iv), refused
}

// TestLifecycleAuditConcurrencyBound: many concurrent executions on one session never run
// more than max_concurrency at once, reach it, and give every slot back whatever way they
// end (crash, panic, a runner that never ends, a client that leaves, a stream cut).
func TestLifecycleAuditConcurrencyBound(t *testing.T) {
	h := startInProcess(t, lifecycleConfig(t, filepath.Join(t.TempDir(), "data"), 1))
	for mc := 1; mc <= 4; mc++ {
		t.Run(strconv.Itoa(mc), func(t *testing.T) {
			h.t = t
			sid := h.session(mc)
			n := 3*mc + 2
			ids := make(chan string, n)
			var wg sync.WaitGroup
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					o := h.exec(ctx, sid, "sleep:150", 30000)
					if o.err != nil || o.res.Status != "ok" {
						t.Errorf("execution: %+v %v", o.res, o.err)
						return
					}
					ids <- o.res.TraceID
				}()
			}
			wg.Wait()
			close(ids)
			var iv [][2]time.Time
			for id := range ids {
				if a, b, ok := h.runInterval(id); ok {
					iv = append(iv, [2]time.Time{a, b})
				}
			}
			if got := maxOverlap(iv); got != mc {
				t.Fatalf("%d executions ran at most %d at once, want exactly max_concurrency %d", len(iv), got, mc)
			}

			// Every way of ending gives the slot back.
			faults := []func(){
				func() { h.exec(ctx, sid, "crash", 5000) },
				func() { h.exec(ctx, sid, "panic", 5000) },
				func() { h.exec(ctx, sid, "nothing", 5000) },
				func() {
					cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
					defer cancel()
					h.exec(cctx, sid, "sleep:3000", 10000)
				},
				func() {
					cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
					defer cancel()
					_, _ = h.c.ExecuteStream(cctx, sid, client.ExecuteRequest{Runner: "echo", Input: "sleep:3000", TimeoutMS: 10000}, nil)
				},
				func() { h.cutStream(sid, "big:8000000") },
				func() { h.exec(ctx, sid, "sleep:5000", 100) }, // the runner's own timeout
			}
			if mc == 2 {
				// Once: costs the timeout and the host's 5 s grace.
				faults = append(faults, func() { h.exec(ctx, sid, "hang", 100) })
			}
			for _, f := range faults {
				wg.Add(1)
				go func() { defer wg.Done(); f() }()
			}
			wg.Wait()
			h.checkSlotsFree(sid, mc)
		})
	}
}

// cutStream starts a streamed execution and closes the connection after its first bytes.
func (h *host) cutStream(sid, input string) {
	req, _ := http.NewRequest("POST", h.url+"/v1/sessions/"+sid+"/executions",
		strings.NewReader(`{"runner":"echo","input":"`+input+`"}`))
	req.Header.Set("Accept", "text/event-stream")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		h.t.Errorf("stream: %v", err)
		return
	}
	_, _ = io.ReadFull(res.Body, make([]byte, 4096))
	res.Body.Close()
}

// TestLifecycleAuditBusyDeadline: a request waiting for a slot gets 429 with Retry-After
// at its own deadline, not before, and not when the slot frees (the holder runs on long
// after the last deadline); one whose slot frees in time runs. No upper bound on the
// time: a loaded machine may answer late, but only a waiter that ignored its deadline
// answers after the holder.
func TestLifecycleAuditBusyDeadline(t *testing.T) {
	h := startInProcess(t, lifecycleConfig(t, filepath.Join(t.TempDir(), "data"), 1))
	sid := h.session(1)
	hold := make(chan outcome, 1)
	go func() { hold <- h.exec(ctx, sid, "sleep:4000", 20000) }()
	time.Sleep(400 * time.Millisecond)
	var wg sync.WaitGroup
	timeouts := []uint64{300, 700, 1200}
	outs := make([]outcome, len(timeouts))
	for i, ms := range timeouts {
		wg.Add(1)
		go func() { defer wg.Done(); outs[i] = h.exec(ctx, sid, "x", ms) }()
	}
	late := make(chan outcome, 1)
	go func() { late <- h.exec(ctx, sid, "sleep:200", 8000) }()
	wg.Wait()
	select {
	case o := <-hold:
		t.Fatalf("the holder ended (%+v %v) before every waiter had its answer: they waited for the slot, not for their deadlines", o.res, o.err)
	default:
	}
	for i, o := range outs {
		want := time.Duration(timeouts[i]) * time.Millisecond
		if o.status != http.StatusTooManyRequests || o.retry <= 0 {
			t.Fatalf("waiter with timeout %v: %+v %v, want 429 with Retry-After", want, o.res, o.err)
		}
		if o.elapsed < want {
			t.Fatalf("waiter with timeout %v answered 429 after %v, before its deadline", want, o.elapsed)
		}
	}
	if o := <-hold; o.err != nil || o.res.Status != "ok" {
		t.Fatalf("holder: %+v %v", o.res, o.err)
	}
	if o := <-late; o.err != nil || o.res.Status != "ok" {
		t.Fatalf("a waiter whose slot freed before its deadline: %+v %v", o.res, o.err)
	}
}

// TestLifecycleAuditDeleteWhileRunning: deleting a session stops the executions running
// in it and refuses those waiting for a slot and those arriving after (409), starts no
// process for it again, and keeps its traces; concurrent deletes all succeed alike.
func TestLifecycleAuditDeleteWhileRunning(t *testing.T) {
	h := startLimitd(t, lifecycleConfig(t, filepath.Join(t.TempDir(), "data"), 1))
	sid := h.session(2)
	var wg sync.WaitGroup
	outs := make([]outcome, 6)
	for i := range outs {
		wg.Add(1)
		// Long enough that executions left to end by themselves would take far longer
		// than the bounds below, which leave a loaded machine room.
		go func() { defer wg.Done(); outs[i] = h.exec(ctx, sid, "sleep:30000", 60000) }()
		if i == 1 {
			// The first two run (their process is up), the others wait for a slot.
			eventually(t, 30*time.Second, func() string {
				if pids, _ := h.sessionRunners(sid); len(pids) == 0 {
					return "the session's runner process did not start"
				}
				return ""
			})
			time.Sleep(300 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond)
	before, _ := h.sessionRunners(sid)
	began := time.Now()
	var deletes sync.WaitGroup
	deleted := make([]*client.Session, 3)
	derrs := make([]error, 3)
	for i := range deleted {
		deletes.Add(1)
		go func() { defer deletes.Done(); deleted[i], derrs[i] = h.c.DeleteSession(ctx, sid) }()
	}
	deletes.Wait()
	for i, err := range derrs {
		if err != nil || deleted[i].State != "deleted" {
			t.Fatalf("concurrent delete %d: %+v %v", i, deleted[i], err)
		}
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Fatalf("delete took %v", took)
	}
	wg.Wait()
	if took := time.Since(began); took > 10*time.Second {
		t.Fatalf("the session's executions ended %v after its delete", took)
	}
	ran := 0
	for i, o := range outs {
		switch {
		case o.err == nil && o.res.Status != "ok":
			ran++ // stopped by the delete
		case o.status == http.StatusConflict:
		default:
			t.Errorf("execution %d: %+v %v, want one stopped by the delete or 409", i, o.res, o.err)
		}
	}
	if ran != 2 {
		t.Errorf("%d executions ran and were stopped, want the 2 that held slots", ran)
	}
	if o := h.exec(ctx, sid, "x", 1000); o.status != http.StatusConflict {
		t.Fatalf("execution after delete: %+v %v, want 409", o.res, o.err)
	}
	if pids, _ := h.sessionRunners(sid); len(pids) > 0 {
		t.Fatalf("health still lists runner processes %v of the deleted session", pids)
	}
	for _, pid := range before {
		if _, _, st, ok := procStat(pid); ok && st != 'Z' {
			t.Fatalf("runner process %d of the deleted session still runs", pid)
		}
	}
	eventually(t, 30*time.Second, func() string {
		if procs := h.runnerProcs(); len(procs) != 1 {
			return fmt.Sprintf("%d echo runner processes, want the pool's 1: %v", len(procs), procs)
		}
		return ""
	})
	if _, err := os.Stat(filepath.Join(h.dataDir, "sessions", sid)); err == nil {
		t.Fatal("the deleted session's directory is back")
	}
	list, err := h.c.ListTraces(ctx, sid, 50, "")
	if err != nil || len(list.Traces) < 2 {
		t.Fatalf("traces of the deleted session: %+v %v", list, err)
	}
	// Deleting again answers the same record; unknown sessions are 404.
	again, err := h.c.DeleteSession(ctx, sid)
	if err != nil || again.State != "deleted" {
		t.Fatalf("delete again: %+v %v", again, err)
	}
	if _, err := h.c.DeleteSession(ctx, "01J00000000000000000000000"); client.StatusOf(err) != http.StatusNotFound {
		t.Fatalf("delete of an unknown session: %v, want 404", err)
	}
	if o := h.exec(ctx, "01J00000000000000000000000", "x", 1000); o.status != http.StatusNotFound {
		t.Fatalf("execution in an unknown session: %+v %v, want 404", o.res, o.err)
	}
}

// TestLifecycleAuditDeleteWhileStarting: a delete that comes while the session's runner
// process is starting (no pool: every start launches one) leaves no process behind,
// whichever way the race goes; so does a delete whose client leaves half-way.
func TestLifecycleAuditDeleteWhileStarting(t *testing.T) {
	h := startLimitd(t, lifecycleConfig(t, filepath.Join(t.TempDir(), "data"), 0))
	counts := map[string]int{}
	for i := range 16 {
		sid := h.session(4)
		var wg sync.WaitGroup
		var outs [3]outcome
		for j := range outs {
			wg.Add(1)
			go func() { defer wg.Done(); outs[j] = h.exec(ctx, sid, "sleep:300", 5000) }()
		}
		time.Sleep(time.Duration(i%8) * 25 * time.Millisecond)
		if i >= 12 {
			// The deleting client leaves while the delete waits for the process.
			dctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
			_, _ = h.c.DeleteSession(dctx, sid)
			cancel()
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := h.c.DeleteSession(ctx, sid); err != nil {
			t.Fatalf("delete: %v", err)
		}
		wg.Wait()
		for _, o := range outs {
			switch {
			case o.err == nil:
				counts["ran:"+o.res.Status]++
			case o.status == http.StatusConflict:
				counts["409"]++
			default:
				t.Fatalf("execution racing a delete: %+v %v", o.res, o.err)
			}
		}
		if o := h.exec(ctx, sid, "x", 1000); o.status != http.StatusConflict {
			t.Fatalf("execution after delete: %+v %v, want 409", o.res, o.err)
		}
	}
	t.Logf("outcomes of executions racing deletes: %v", counts)
	eventually(t, 30*time.Second, func() string {
		if procs := h.runnerProcs(); len(procs) != 0 {
			return fmt.Sprintf("%d runner processes outlive their deleted sessions: %v", len(procs), procs)
		}
		return ""
	})
	if pids, _ := h.sessionRunners(""); len(pids) > 0 {
		t.Fatalf("health lists runner processes %v, every session is deleted", pids)
	}
}

// TestLifecycleAuditChurn: many sessions created, used and deleted quickly leave limitd
// with the file descriptors and runner processes it had before.
func TestLifecycleAuditChurn(t *testing.T) {
	h := startLimitd(t, lifecycleConfig(t, filepath.Join(t.TempDir(), "data"), 1))
	cycle := func(i int) error {
		s, err := h.c.CreateSession(ctx, client.CreateSessionRequest{Name: "churn", MaxConcurrency: 2})
		if err != nil {
			return err
		}
		if i%2 == 0 {
			if _, err := h.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "x"}); err != nil {
				return err
			}
		} else if _, err := h.c.ExecuteStream(ctx, s.ID, client.ExecuteRequest{Runner: "echo", Input: "big:1000"}, nil); err != nil {
			return err
		}
		if i%5 == 0 {
			go h.exec(ctx, s.ID, "sleep:2000", 5000) // still running at the delete
			time.Sleep(20 * time.Millisecond)
		}
		_, err = h.c.DeleteSession(ctx, s.ID)
		return err
	}
	settled := func() (int, int) {
		var fds, procs int
		eventually(t, 30*time.Second, func() string {
			if _, idle := h.sessionRunners(""); idle != 1 {
				return "the pool did not refill"
			}
			fds, procs = fdCount(h.pid), len(h.runnerProcs())
			if procs != 1 {
				return fmt.Sprintf("%d runner processes, want the pool's 1", procs)
			}
			return ""
		})
		return fds, procs
	}
	for i := range 4 { // warm up: connections, the storage fast path, the pool
		if err := cycle(i); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2500 * time.Millisecond)
	fds0, _ := settled()
	const workers, each = 6, 12
	var wg sync.WaitGroup
	var failed atomic.Value
	began := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := cycle(w*each + i); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d sessions created, used and deleted in %v", workers*each, time.Since(began))
	time.Sleep(2500 * time.Millisecond) // executions stopped by deletes, idle connections
	h.c.HTTP.CloseIdleConnections()
	var fds int
	eventually(t, 30*time.Second, func() string {
		fds, _ = settled()
		if fds > fds0+4 {
			return fmt.Sprintf("limitd holds %d file descriptors, %d before %d sessions came and went: %s", fds, fds0, workers*each, fdList(h.pid))
		}
		return ""
	})
	t.Logf("file descriptors: %d before, %d after", fds0, fds)
}

func fdList(pid int) string {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	kinds := map[string]int{}
	for _, e := range ents {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if i := strings.IndexByte(l, ':'); i > 0 {
			l = l[:i]
		}
		kinds[l]++
	}
	return fmt.Sprint(kinds)
}

// TestLifecycleAuditPoolBurst: sessions opened faster than the pool refills, and pool
// processes killed while idle, still each get a process of their own; the pool comes
// back to its size and nothing is left once the sessions are deleted.
func TestLifecycleAuditPoolBurst(t *testing.T) {
	h := startLimitd(t, lifecycleConfig(t, filepath.Join(t.TempDir(), "data"), 2))
	eventually(t, 30*time.Second, func() string {
		if _, idle := h.sessionRunners(""); idle != 2 {
			return "the pool did not fill"
		}
		return ""
	})
	burst := func(n int) []string {
		var wg sync.WaitGroup
		var mu sync.Mutex
		pids := map[string]string{}
		var ids []string
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sid := h.session(1)
				o := h.exec(ctx, sid, "x", 10000)
				if o.err != nil || o.res.Status != "ok" || !strings.Contains(o.res.Stdout, "session="+sid+" ") {
					t.Errorf("burst execution: %+v %v", o.res, o.err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				pid := pidOf(t, o.res.Stdout)
				if other, ok := pids[pid]; ok {
					t.Errorf("sessions %s and %s share runner process %s", other, sid, pid)
				}
				pids[pid] = sid
				ids = append(ids, sid)
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		return ids
	}
	ids := burst(10)
	// Kill the idle pool processes, again and again, while sessions open.
	for round := range 3 {
		hl, _ := h.c.Health(ctx)
		for _, p := range hl.Plugins {
			if p.Kind == "pool" && p.PID > 0 {
				_ = syscall.Kill(p.PID, syscall.SIGKILL)
			}
		}
		if round == 1 {
			time.Sleep(1500 * time.Millisecond) // found dead by the pool's check
		}
		ids = append(ids, burst(4)...)
	}
	eventually(t, 30*time.Second, func() string {
		if _, idle := h.sessionRunners(""); idle != 2 {
			return fmt.Sprintf("the pool has %d idle processes, want 2", idle)
		}
		return ""
	})
	for _, sid := range ids {
		if _, err := h.c.DeleteSession(ctx, sid); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, func() string {
		if procs := h.runnerProcs(); len(procs) != 2 {
			return fmt.Sprintf("%d runner processes with every session deleted, want the pool's 2: %v", len(procs), procs)
		}
		return ""
	})
}

// TestLifecycleAuditRestart: limitd killed (SIGKILL) or stopped (SIGTERM) while executions
// run: the sessions work after the restart, each in a fresh process, and the traces of
// the executions cut by the kill verify.
func TestLifecycleAuditRestart(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := lifecycleConfig(t, dataDir, 1)
	h := startLimitd(t, cfg)
	a, b := h.session(2), h.session(1)
	for _, sid := range []string{a, b} {
		if o := h.exec(ctx, sid, "x", 5000); o.err != nil {
			t.Fatal(o.err)
		}
	}
	var wg sync.WaitGroup
	for _, sid := range []string{a, a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); h.exec(ctx, sid, "sleep:10000", 20000) }()
	}
	time.Sleep(800 * time.Millisecond) // past RecordStartAfter: their traces are stored
	killDaemon(t, h.d, h.plugins)
	wg.Wait()

	h = startLimitd(t, cfg)
	for _, sid := range []string{a, b} {
		s, err := h.c.GetSession(ctx, sid)
		if err != nil || s.State != "active" {
			t.Fatalf("session after restart: %+v %v", s, err)
		}
		o := h.exec(ctx, sid, "x", 5000)
		if o.err != nil || o.res.Status != "ok" || !strings.Contains(o.res.Stdout, " n=1 ") {
			t.Fatalf("execution after restart: %+v %v, want one in a fresh process", o.res, o.err)
		}
		list, err := h.c.ListTraces(ctx, sid, 50, "")
		if err != nil {
			t.Fatal(err)
		}
		cut := 0
		for _, tr := range list.Traces {
			v, err := h.c.VerifyProvenance(ctx, tr.ID)
			if err != nil || !v.Valid {
				t.Fatalf("trace %s after the kill: %+v %v", tr.ID, v, err)
			}
			// An execution cut by the kill has its outcome recorded at the restart.
			full, err := h.c.GetTrace(ctx, tr.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range full.Provenance {
				var out struct{ Status string }
				if e.Kind == "executed" && json.Unmarshal(e.Data, &out) == nil && out.Status == "interrupted" {
					cut++
				}
			}
		}
		want := map[string]int{a: 2, b: 1}[sid]
		if cut != want {
			t.Fatalf("session %s has %d traces of executions cut by the kill (recorded as interrupted), want %d (%d traces)", sid, cut, want, len(list.Traces))
		}
	}

	// A graceful stop lets a running execution finish; the session goes on after.
	done := make(chan outcome, 1)
	go func() { done <- h.exec(ctx, a, "sleep:1000", 5000) }()
	time.Sleep(300 * time.Millisecond)
	h.d.stop()
	if o := <-done; o.err != nil || o.res.Status != "ok" {
		t.Fatalf("execution across SIGTERM: %+v %v", o.res, o.err)
	}
	eventually(t, 30*time.Second, func() string {
		if procs := h.runnerProcs(); len(procs) != 0 {
			return fmt.Sprintf("runner processes outlive limitd's SIGTERM: %v", procs)
		}
		return ""
	})
	h = startLimitd(t, cfg)
	if o := h.exec(ctx, a, "x", 5000); o.err != nil || o.res.Status != "ok" {
		t.Fatalf("execution after SIGTERM restart: %+v %v", o.res, o.err)
	}
}

// TestLifecycleAuditStalledStream: a streaming client that stops reading (its connection
// left open) must not hold its session's slot for long. It did, until api.write_timeout
// (5 min by default; never with 0): the API's SSE writer queued events with a blocking send
// that nothing bounded, and the engine calls it from the runner's stream, inside the slot.
func TestLifecycleAuditStalledStream(t *testing.T) {
	h := startInProcess(t, lifecycleConfig(t, filepath.Join(t.TempDir(), "data"), 1))
	sid := h.session(1)
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"runner":"echo","input":"big:64000000","timeout_ms":1000}`
	began := time.Now()
	fmt.Fprintf(conn, "POST /v1/sessions/%s/executions HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", sid, len(body), body)
	time.Sleep(time.Second) // the stream has started, and stalled
	// The slot comes free once the stream has taken nothing for sseStall (5 s): the
	// client counts as gone and its execution is cancelled. (Before, it stayed taken
	// until api.write_timeout, 5 minutes or never.)
	o := h.exec(ctx, sid, "x", 15000)
	if o.err != nil {
		t.Fatalf("an execution after a stalled stream: %+v %v", o.res, o.err)
	}
	took := time.Since(began)
	t.Logf("the next execution ran %v after the stalled stream began", took)
	if took > 20*time.Second {
		t.Fatalf("the stalled stream held the session's only slot for %v", took)
	}
}
