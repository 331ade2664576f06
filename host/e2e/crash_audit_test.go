package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/client"
)

// The crash audit: concurrent clients create traces, append provenance, flag, merge and
// run Python while limitd (or only its storage plugin) is killed with SIGKILL at seeded
// random moments; after each restart every acknowledged write must be there, every
// chain must verify, and no process of the killed daemon may be left running.
// CRASH_AUDIT_SEED replays a run; the seed is logged.

// auditSeed returns the run's seed.
func auditSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CRASH_AUDIT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CRASH_AUDIT_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (CRASH_AUDIT_SEED=%d replays it)", seed, seed)
	return seed
}

// auditPluginDir links the plugin binaries into a directory of the test's own, so the
// processes started from it can be told from those of other tests by their command line.
func auditPluginDir(t *testing.T, storageName string, python bool) string {
	t.Helper()
	srcs := []string{
		testbin.Plugin(t, "storage-"+storageName),
		testbin.TestPlugin(t, "runner-echo"),
		testbin.TestPlugin(t, "governance-keyword"),
	}
	if python {
		srcs = append(srcs, testbin.Plugin(t, "runner-python"))
	}
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, src := range srcs {
		dst := filepath.Join(dir, filepath.Base(src))
		if err := os.Link(src, dst); err != nil {
			b, rerr := os.ReadFile(src)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if err := os.WriteFile(dst, b, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func auditConfig(t *testing.T, storageName, storageCfg, pluginDir, dataDir string, python bool) string {
	t.Helper()
	runner := `runner "echo" {}`
	if python {
		runner += `
runner "python" {
  config {
    timeout          = "10s"
    memory_limit     = "256MiB"
    max_output_bytes = "64KiB"
  }
}`
	}
	return writeConfig(t, fmt.Sprintf(`host {
  listen     = "127.0.0.1:0"
  data_dir   = %q
  plugin_dir = %q
}
storage %q {
  config {
%s
  }
}
%s
governance {
  policy = "default"
  rule "keyword" {}
}
`, dataDir, pluginDir, storageName, storageCfg, runner))
}

// ackedTrace is what the API acknowledged of one trace.
type ackedTrace struct {
	session string
	hashes  map[int64]string // entry index → hash, as acknowledged
	flags   []string         // reasons of acknowledged flags
	merged  bool
	exec    bool // created by an acknowledged execution
}

// audit is everything acknowledged so far, across restarts.
type audit struct {
	mu       sync.Mutex
	traces   map[string]*ackedTrace
	sessions map[string]bool
	// torn are traces whose writes a test tore out of the log on purpose.
	torn map[string]bool
}

func newAudit() *audit {
	return &audit{traces: map[string]*ackedTrace{}, sessions: map[string]bool{}, torn: map[string]bool{}}
}

func (a *audit) trace(id, session string) *ackedTrace {
	tr := a.traces[id]
	if tr == nil {
		tr = &ackedTrace{session: session, hashes: map[int64]string{}}
		a.traces[id] = tr
	}
	return tr
}

func (a *audit) entry(id, session string, index int64, hash string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.trace(id, session).hashes[index] = hash
}

// ids returns the acknowledged, unmerged traces (for appends after a restart).
func (a *audit) open() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for id, tr := range a.traces {
		if !tr.merged && !tr.exec && !a.torn[id] {
			out = append(out, id)
		}
	}
	return out
}

func (a *audit) count() (traces, merged, execs int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, tr := range a.traces {
		traces++
		if tr.merged {
			merged++
		}
		if tr.exec {
			execs++
		}
	}
	return
}

// opStats counts what the clients did.
type opStats struct {
	mu   sync.Mutex
	ok   map[string]int
	fail map[string]int
	// afterStorageKill are errors of calls begun once the storage plugin was killed.
	afterStorageKill []string
	storageKilled    time.Time
	// errs is an error of each kind of call that failed before limitd was killed.
	errs   map[string]string
	killed time.Time
	// unsent are failures of calls whose storage request never reached the plugin.
	unsent []string
}

// kill notes that limitd is being killed: calls that fail from now on were cut short.
func (s *opStats) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killed = time.Now()
}

func (s *opStats) done(op string, began time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ok == nil {
		s.ok, s.fail, s.errs = map[string]int{}, map[string]int{}, map[string]string{}
	}
	if err == nil {
		s.ok[op]++
		return
	}
	if !s.killed.IsZero() {
		return // cut short by the kill
	}
	s.fail[op]++
	if _, ok := s.errs[op]; !ok {
		s.errs[op] = err.Error()
	}
	if m := err.Error(); strings.Contains(m, "request not sent") || strings.Contains(m, "error while dialing") {
		// The storage plugin never saw the request, so the host could have made it
		// again on the restarted plugin rather than fail it. (A failed write alone says
		// nothing of the sort: a call waiting for its answer when another call's write
		// broke the connection was sent, and its fate is unknown.)
		s.unsent = append(s.unsent, op+": "+m)
	}
	if !s.storageKilled.IsZero() && began.After(s.storageKilled) && !errors.Is(err, context.Canceled) {
		s.afterStorageKill = append(s.afterStorageKill, fmt.Sprintf("%s begun %v after the kill: %v", op, began.Sub(s.storageKilled).Round(time.Millisecond), err))
	}
}

// load runs the clients until ctx ends.
func (a *audit) load(ctx context.Context, d *daemon, rng *rand.Rand, round int, python bool, st *opStats) *sync.WaitGroup {
	var wg sync.WaitGroup
	sess, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: fmt.Sprintf("audit-%d", round)})
	if err != nil {
		d.t.Fatalf("create session: %v", err)
	}
	a.mu.Lock()
	a.sessions[sess.ID] = true
	a.mu.Unlock()
	old := a.open()
	for w := 0; w < 4; w++ {
		wr := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				a.traceOps(ctx, d, wr, sess.ID, fmt.Sprintf("r%d-w%d-n%d", round, w, n), old, st)
			}
		}()
	}
	if python {
		seed := rng.Uint64()
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				began := time.Now()
				ps, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: fmt.Sprintf("py-%d-%d", round, w)})
				st.done("session", began, err)
				if err != nil {
					return
				}
				a.mu.Lock()
				a.sessions[ps.ID] = true
				a.mu.Unlock()
				pr := rand.New(rand.NewPCG(seed, uint64(100+w)))
				for n := 0; ctx.Err() == nil; n++ {
					code := fmt.Sprintf("x = %d\nprint(x * 2)", n)
					if pr.IntN(4) == 0 {
						// Longer than 100 ms: stored when it starts, its outcome appended.
						code = "import time\ntime.sleep(0.15)\n" + code
					}
					began := time.Now()
					r, err := d.c.Execute(ctx, ps.ID, client.ExecuteRequest{Runner: "python", Input: code})
					if err == nil && (r.Status != "ok" || r.TraceID == "") {
						err = fmt.Errorf("execution answered %+v", r)
					}
					st.done("python", began, err)
					if err != nil {
						continue
					}
					a.mu.Lock()
					a.trace(r.TraceID, ps.ID).exec = true
					a.mu.Unlock()
				}
			}()
		}
	}
	return &wg
}

// traceOps creates a trace and appends, flags and merges it, recording what was
// acknowledged; now and then it appends to a trace of an earlier incarnation instead.
func (a *audit) traceOps(ctx context.Context, d *daemon, rng *rand.Rand, sid, tag string, old []string, st *opStats) {
	if len(old) > 0 && rng.IntN(4) == 0 {
		id := old[rng.IntN(len(old))]
		began := time.Now()
		e, err := d.c.AppendProvenance(ctx, id, "later", "audit", map[string]any{"tag": tag})
		if err != nil && client.StatusOf(err) == 409 {
			err = nil // merged by now: appends are refused
		} else if err == nil {
			a.entry(id, e.SessionID, e.Index, e.Hash)
		}
		st.done("append-old", began, err)
		return
	}
	began := time.Now()
	tr, err := d.c.CreateTrace(ctx, sid, map[string]any{"tag": tag})
	st.done("create", began, err)
	if err != nil {
		return
	}
	a.entry(tr.ID, sid, tr.Length-1, tr.Head)
	for k := rng.IntN(3); k > 0; k-- {
		began := time.Now()
		e, err := d.c.AppendProvenance(ctx, tr.ID, "step", "audit", map[string]any{"tag": tag, "k": k})
		st.done("append", began, err)
		if err != nil {
			return
		}
		a.entry(tr.ID, sid, e.Index, e.Hash)
	}
	if rng.IntN(2) == 0 {
		reason := "audit " + tag
		began := time.Now()
		f, err := d.c.Flag(ctx, client.FlagRequest{TraceID: tr.ID, Flag: "anomaly", Severity: 2, Reason: reason})
		st.done("flag", began, err)
		if err != nil {
			return
		}
		a.entry(tr.ID, sid, f.Length-1, f.Head)
		a.mu.Lock()
		a.traces[tr.ID].flags = append(a.traces[tr.ID].flags, reason)
		a.mu.Unlock()
	}
	if rng.IntN(3) == 0 {
		began := time.Now()
		m, err := d.c.Merge(ctx, tr.ID)
		st.done("merge", began, err)
		if err != nil {
			return
		}
		a.entry(tr.ID, sid, m.Trace.Length-1, m.Trace.Head)
		a.mu.Lock()
		a.traces[tr.ID].merged = true
		a.mu.Unlock()
	}
}

// check verifies everything acknowledged against a restarted daemon.
func (a *audit) check(t *testing.T, d *daemon, when string) {
	t.Helper()
	a.mu.Lock()
	ids := make([]string, 0, len(a.traces))
	for id := range a.traces {
		ids = append(ids, id)
	}
	sessions := make([]string, 0, len(a.sessions))
	for id := range a.sessions {
		sessions = append(sessions, id)
	}
	a.mu.Unlock()
	// Every trace stored, acknowledged or not (cut short by the crash), must verify.
	stored := map[string]bool{}
	for _, id := range sessions {
		if _, err := d.c.GetSession(ctx, id); err != nil {
			t.Errorf("%s: acknowledged session %s lost: %v", when, id, err)
			continue
		}
		for tok := ""; ; {
			l, err := d.c.ListTraces(ctx, id, 500, tok)
			if err != nil {
				t.Fatalf("%s: list the traces of session %s: %v", when, id, err)
			}
			for _, tr := range l.Traces {
				stored[tr.ID] = true
			}
			if tok = l.NextToken; tok == "" {
				break
			}
		}
	}
	a.mu.Lock()
	for id := range a.traces {
		delete(stored, id)
	}
	a.mu.Unlock()
	for id := range stored {
		if v, err := d.c.VerifyProvenance(ctx, id); err != nil || !v.Valid {
			t.Errorf("%s: trace %s, whose write the crash cut short, does not verify: %+v %v", when, id, v, err)
		}
	}
	if len(stored) > 0 {
		t.Logf("%s: %d traces stored but never acknowledged verify too", when, len(stored))
	}
	listMerged := func() map[string]bool {
		merged := map[string]bool{}
		for tok := ""; ; {
			l, err := d.c.ListMerged(ctx, 500, tok)
			if err != nil {
				t.Fatalf("%s: list merged: %v", when, err)
			}
			for _, tr := range l.Traces {
				merged[tr.ID] = true
			}
			if tok = l.NextToken; tok == "" {
				return merged
			}
		}
	}
	merged := listMerged()
	var (
		mu          sync.Mutex
		errs        []string
		interrupted []string // merged, but not in the shared record
	)
	report := func(format string, args ...any) {
		mu.Lock()
		errs = append(errs, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	work := make(chan string)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				a.mu.Lock()
				want := a.traces[id]
				torn := a.torn[id]
				hashes := make(map[int64]string, len(want.hashes))
				for i, h := range want.hashes {
					hashes[i] = h
				}
				flags := append([]string(nil), want.flags...)
				isMerged, isExec := want.merged, want.exec
				a.mu.Unlock()
				tv, err := d.c.GetTrace(ctx, id)
				if torn && client.StatusOf(err) == 404 {
					continue // its writes were torn out of the log on purpose
				}
				if err != nil {
					report("acknowledged trace %s lost: %v", id, err)
					continue
				}
				for i, h := range hashes {
					switch {
					case i >= int64(len(tv.Provenance)):
						report("trace %s: acknowledged entry %d lost (chain has %d)", id, i, len(tv.Provenance))
					case tv.Provenance[i].Hash != h:
						report("trace %s: entry %d has hash %s, %s was acknowledged", id, i, tv.Provenance[i].Hash, h)
					}
				}
				if isExec {
					executed := false
					for _, e := range tv.Provenance {
						executed = executed || e.Kind == "executed"
					}
					if !executed {
						report("trace %s: the execution was acknowledged, but its chain has no executed entry", id)
					}
				}
				for _, r := range flags {
					found := false
					for _, f := range tv.Flags {
						found = found || f.Reason == r
					}
					if !found {
						report("trace %s: acknowledged flag %q lost", id, r)
					}
				}
				if isMerged && (!merged[id] || tv.Status != "merged") {
					report("trace %s: merge acknowledged, but status %s and listed in /v1/merged: %v", id, tv.Status, merged[id])
				}
				if tv.Status == "merged" && !merged[id] && !isMerged {
					mu.Lock()
					interrupted = append(interrupted, id)
					mu.Unlock()
				}
				v, err := d.c.VerifyProvenance(ctx, id)
				if err != nil || !v.Valid {
					report("trace %s does not verify: %+v %v", id, v, err)
				}
			}
		}()
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	// A merge the crash cut short between the trace's "merged" entry and its copy into the
	// shared record was not acknowledged, but the trace must not stay out of the shared
	// record for good: merging it again completes the copy.
	// A merge whose client went away (the load's stop) finishes its copy on the host by
	// itself, and may finish it after the listing above: merging again then answers 409
	// (already merged), and the trace is listed now.
	refused := map[string]error{}
	for _, id := range interrupted {
		if _, err := d.c.Merge(ctx, id); err != nil {
			refused[id] = err
		}
	}
	if len(refused) > 0 {
		now := listMerged()
		for _, id := range interrupted {
			if err := refused[id]; err != nil && !now[id] {
				errs = append(errs, fmt.Sprintf("trace %s: a merge cut short by the crash left it merged but out of /v1/merged, and merging it again fails: %v", id, err))
			}
		}
	}
	for i, e := range errs {
		if i == 20 {
			t.Errorf("%s: … and %d more", when, len(errs)-20)
			break
		}
		t.Errorf("%s: %s", when, e)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
}

// proc is a process, told apart from a later one with the same pid by its start time.
type proc struct {
	pid   int
	start string
	cmd   string
}

// procStat returns a process's parent, start time and state from /proc/pid/stat.
func procStat(pid int) (ppid int, start string, state byte, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, "", 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, "", 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[19], f[0][0], true
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

func allPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// descendants lists the processes below root.
func descendants(root int) []proc {
	children := map[int][]int{}
	for _, pid := range allPIDs() {
		if ppid, _, _, ok := procStat(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []proc
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if _, start, _, ok := procStat(c); ok {
				out = append(out, proc{pid: c, start: start, cmd: cmdline(c)})
			}
			queue = append(queue, c)
		}
	}
	return out
}

// running reports whether p still runs (a zombie does not).
func (p proc) running() bool {
	_, start, state, ok := procStat(p.pid)
	return ok && start == p.start && state != 'Z'
}

// mentioning lists running processes whose command line contains one of marks.
func mentioning(marks ...string) []proc {
	var out []proc
	for _, pid := range allPIDs() {
		if pid == os.Getpid() {
			continue
		}
		_, start, state, ok := procStat(pid)
		if !ok || state == 'Z' {
			continue
		}
		c := cmdline(pid)
		for _, m := range marks {
			if strings.Contains(c, m) {
				out = append(out, proc{pid: pid, start: start, cmd: c})
				break
			}
		}
	}
	return out
}

// killDaemon SIGKILLs limitd and checks that none of its processes outlives it.
func killDaemon(t *testing.T, d *daemon, marks ...string) {
	t.Helper()
	before := descendants(d.cmd.Process.Pid)
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Wait()
	// The plugins notice a dead parent by polling too; on a loaded machine that takes a while.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []proc
		for _, p := range before {
			if p.running() {
				left = append(left, p)
			}
		}
		for _, p := range mentioning(marks...) {
			left = append(left, p)
		}
		if len(left) == 0 {
			names := map[string]int{}
			for _, p := range before {
				names[filepath.Base(strings.Fields(p.cmd + " ?")[0])]++
			}
			t.Logf("SIGKILL of limitd: its %d processes are gone %v", len(before), names)
			return
		}
		if time.Now().After(deadline) {
			for _, p := range left {
				t.Errorf("process %d (%s) outlived limitd's SIGKILL by 30s", p.pid, p.cmd)
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
			t.FailNow()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// storagePID returns the storage plugin's pid and restart count from /v1/health.
func storagePID(t *testing.T, d *daemon) (int, int) {
	t.Helper()
	h, err := d.c.Health(ctx)
	if err != nil && h == nil {
		t.Fatalf("health: %v", err)
	}
	for _, p := range h.Plugins {
		if p.Kind == "storage" {
			return p.PID, p.Restarts
		}
	}
	t.Fatalf("no storage plugin in %+v", h.Plugins)
	return 0, 0
}

type auditBackend struct {
	name    string
	config  string // the storage block's config attributes
	python  bool
	rounds  int
	storage map[int]bool // rounds in which the storage plugin is killed too
}

func TestCrashAudit(t *testing.T) {
	seed := auditSeed(t)
	for i, b := range []auditBackend{
		{name: "bolt", config: `path = "limit.db"`, python: true, rounds: 4, storage: map[int]bool{1: true, 2: true}},
		{name: "sqlite", config: `path = "limit.sqlite"`, rounds: 2, storage: map[int]bool{1: true}},
		{name: "file", config: `root = "files"`, rounds: 2, storage: map[int]bool{1: true}},
		// Its config is a schema of its own on the test server (skipped without one).
		{name: "postgres", rounds: 3, storage: map[int]bool{1: true}},
	} {
		t.Run(b.name, func(t *testing.T) {
			if b.name == "postgres" {
				b.config = postgresAuditConfig(t)
			}
			crashAudit(t, b, seed+uint64(i))
		})
	}
}

func crashAudit(t *testing.T, b auditBackend, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0))
	dataDir := t.TempDir()
	pluginDir := auditPluginDir(t, b.name, b.python)
	cfg := auditConfig(t, b.name, b.config, pluginDir, dataDir, b.python)
	a := newAudit()
	d := start(t, cfg)
	for round := 0; round < b.rounds; round++ {
		st := &opStats{}
		cctx, cancel := context.WithCancel(ctx)
		wg := a.load(cctx, d, rng, round, b.python, st)
		runFor := time.Duration(300+rng.IntN(600)) * time.Millisecond
		if b.storage[round] {
			time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
			pid, restarts := storagePID(t, d)
			_, pstart, _, _ := procStat(pid)
			// Calls made as the plugin dies may fail (those it may have applied are not
			// retried), but not one whose request never reached it: that one is retried.
			var racing sync.WaitGroup
			sid := mustSession(t, a)
			for i := range 16 {
				racing.Add(1)
				go func() {
					defer racing.Done()
					if i == 0 {
						if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
							t.Error(err)
						}
						return
					}
					time.Sleep(time.Duration(i) * 100 * time.Microsecond)
					tr, err := d.c.CreateTrace(ctx, sid, map[string]any{"racing": "storage kill", "i": i})
					if err != nil {
						if m := err.Error(); strings.Contains(m, "write unix") || strings.Contains(m, "not sent") || strings.Contains(m, "error while dialing") {
							t.Errorf("round %d: a call whose request never reached the dying storage plugin failed: %v", round, err)
						} else {
							t.Logf("round %d: a call made as the storage plugin died failed: %v", round, err)
						}
						return
					}
					a.entry(tr.ID, tr.SessionID, tr.Length-1, tr.Head)
				}()
			}
			racing.Wait()
			// Once the process is dead, the calls begun after it must succeed, however
			// they write (create and append are conditional batches, never retried when
			// the plugin may have applied them): they wait for the restart.
			for dead := time.Now().Add(30 * time.Second); (proc{pid: pid, start: pstart}).running(); {
				if time.Now().After(dead) {
					t.Fatalf("storage plugin %d still runs 30s after SIGKILL", pid)
				}
				time.Sleep(time.Millisecond)
			}
			st.mu.Lock()
			st.storageKilled = time.Now()
			st.mu.Unlock()
			began := time.Now()
			var first sync.WaitGroup
			for i := range 8 {
				first.Add(1)
				go func() {
					defer first.Done()
					tr, err := d.c.CreateTrace(ctx, sid, map[string]any{"after": "storage kill", "i": i})
					if err != nil {
						t.Errorf("round %d: a call begun %v after the storage plugin died failed after %v: %v", round, began.Sub(st.storageKilled), time.Since(began), err)
						return
					}
					a.entry(tr.ID, tr.SessionID, tr.Length-1, tr.Head)
					e, err := d.c.AppendProvenance(ctx, tr.ID, "step", "audit", nil)
					if err != nil {
						t.Errorf("round %d: append after the storage plugin's restart: %v", round, err)
						return
					}
					a.entry(tr.ID, tr.SessionID, e.Index, e.Hash)
				}()
			}
			first.Wait()
			if t.Failed() {
				t.FailNow()
			}
			npid, nrestarts := storagePID(t, d)
			if npid == pid || nrestarts != restarts+1 {
				t.Fatalf("round %d: storage plugin pid %d→%d, restarts %d→%d", round, pid, npid, restarts, nrestarts)
			}
			t.Logf("round %d: storage plugin %d killed; the calls begun once it was dead answered within %v, by %d", round, pid, time.Since(began).Round(time.Millisecond), npid)
		}
		time.Sleep(runFor)
		st.kill()
		killDaemon(t, d, pluginDir, dataDir)
		cancel()
		wg.Wait()
		began := time.Now()
		d = start(t, cfg)
		startup := time.Since(began)
		st.mu.Lock()
		if len(st.unsent) > 0 {
			t.Errorf("round %d: %d calls failed though their storage request never reached the plugin (the host could have retried them), e.g. %s", round, len(st.unsent), st.unsent[0])
		}
		if len(st.afterStorageKill) > 0 {
			t.Errorf("round %d: %d calls begun after the storage plugin was killed failed, e.g. %s", round, len(st.afterStorageKill), st.afterStorageKill[0])
		}
		t.Logf("round %d: ran %v, restarted in %v; acknowledged %v, failed before the kill %v", round, runFor, startup.Round(time.Millisecond), st.ok, st.fail)
		for op, e := range st.errs {
			t.Logf("round %d: a failed %s: %s", round, op, e)
		}
		st.mu.Unlock()
		a.check(t, d, fmt.Sprintf("round %d (%s)", round, b.name))
		traces, merged, execs := a.count()
		t.Logf("round %d: all %d acknowledged traces (%d merged, %d executions) survived", round, traces, merged, execs)
		if traces == 0 || (round > 0 && merged == 0) {
			t.Fatalf("round %d: too little was acknowledged to tell anything", round)
		}
	}
	if b.name == "bolt" {
		tornWAL(t, d, a, cfg, dataDir, pluginDir, rng)
	}
}

func mustSession(t *testing.T, a *audit) string {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for id := range a.sessions {
		return id
	}
	t.Fatal("no session")
	return ""
}

// walRecord is a record of the bolt plugin's write-ahead log.
type walRecord struct {
	off, end int64
	payload  []byte
}

// readWAL parses a log file as storage-bolt writes it (see plugins/storage-bolt/wal.go):
// a 4096-byte header (magic, version, epoch, salt, CRC-32C), then records (length,
// CRC-32C, payload starting with the salt) up to the first that is not valid.
func readWAL(t *testing.T, path string) (uint64, []walRecord) {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	tab := crc32.MakeTable(crc32.Castagnoli)
	if len(data) < 4096 || string(data[:8]) != "LIMITWAL" || crc32.Checksum(data[:28], tab) != binary.LittleEndian.Uint32(data[28:]) {
		return 0, nil
	}
	epoch, salt := binary.LittleEndian.Uint64(data[12:]), binary.LittleEndian.Uint64(data[20:])
	var recs []walRecord
	for off := 4096; off+8 <= len(data); {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		if n < 8 || n > len(data)-off-8 {
			break
		}
		p := data[off+8 : off+8+n]
		if crc32.Checksum(p, tab) != binary.LittleEndian.Uint32(data[off+4:]) || binary.LittleEndian.Uint64(p) != salt {
			break
		}
		recs = append(recs, walRecord{off: int64(off), end: int64(off + 8 + n), payload: p})
		off += 8 + n
	}
	return epoch, recs
}

// tornWAL tears the last record of the bolt plugin's log, as a crash in the middle of its
// write would, and restarts: the daemon must start, keep everything before the record,
// and say in its log that it dropped a torn record.
func tornWAL(t *testing.T, d *daemon, a *audit, cfg, dataDir, pluginDir string, rng *rand.Rand) {
	sid := mustSession(t, a)
	for attempt := 0; ; attempt++ {
		var created []string
		for i := 0; i < 5; i++ {
			tr, err := d.c.CreateTrace(ctx, sid, map[string]any{"torn": attempt, "i": i})
			if err != nil {
				t.Fatal(err)
			}
			a.entry(tr.ID, sid, tr.Length-1, tr.Head)
			created = append(created, tr.ID)
		}
		killDaemon(t, d, pluginDir, dataDir)
		// The newer file holds the latest records.
		var (
			path  string
			last  walRecord
			epoch uint64
		)
		for _, p := range []string{"limit.db-wal", "limit.db-wal2"} {
			p = filepath.Join(dataDir, p)
			ep, recs := readWAL(t, p)
			if len(recs) > 0 && (path == "" || ep > epoch) {
				path, last, epoch = p, recs[len(recs)-1], ep
			}
		}
		if path == "" {
			// A checkpoint emptied the log just before the kill: try again.
			if attempt == 4 {
				t.Fatal("the write-ahead log never held a record at the kill")
			}
			d = start(t, cfg)
			continue
		}
		cut := int64(1 + rng.IntN(8))
		if err := os.Truncate(path, last.end-cut); err != nil {
			t.Fatal(err)
		}
		for _, id := range created {
			if strings.Contains(string(last.payload), id) {
				a.mu.Lock()
				a.torn[id] = true
				a.mu.Unlock()
			}
		}
		t.Logf("tore the last record of %s (offset %d, %d bytes) by cutting %d bytes; it held traces %v", filepath.Base(path), last.off, last.end-last.off, cut, a.torn)
		d = start(t, cfg)
		a.check(t, d, "after a torn write-ahead log record")
		// The record was never fully on disk: the daemon must say it dropped it.
		time.Sleep(100 * time.Millisecond)
		log := d.stderr.String()
		if !strings.Contains(log, "torn") {
			t.Fatalf("the daemon dropped a torn write-ahead log record without a word in its log:\n%s", log)
		}
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "torn") {
				t.Logf("log: %s", line)
			}
		}
		// And it goes on: writes work, and the next restart finds nothing torn.
		if _, err := d.c.CreateTrace(ctx, sid, map[string]any{"after": "torn"}); err != nil {
			t.Fatal(err)
		}
		return
	}
}

// TestCrashAuditSandboxWithoutPIDNamespace: where the sandbox gets no PID namespace (a
// kernel or user that cannot make one, or disable_isolation), killing the plugin's init
// does not take the worker with it; a worker busy running code must still die with
// limitd.
func TestCrashAuditSandboxWithoutPIDNamespace(t *testing.T) {
	dataDir := t.TempDir()
	pluginDir := auditPluginDir(t, "bolt", true)
	cfg := writeConfig(t, fmt.Sprintf(`host {
  listen     = "127.0.0.1:0"
  data_dir   = %q
  plugin_dir = %q
}
storage "bolt" {}
runner "python" {
  config {
    timeout              = "60s"
    disable_isolation    = ["pid_ns"]
    allow_weak_isolation = true
  }
}
`, dataDir, pluginDir))
	d := start(t, cfg)
	s, err := d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "busy"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "python", Input: "print(1)"}); err != nil || r.Status != "ok" {
		t.Fatalf("%+v %v", r, err)
	}
	go func() {
		_, _ = d.c.Execute(context.Background(), s.ID, client.ExecuteRequest{Runner: "python", Input: "while True: pass"})
	}()
	time.Sleep(500 * time.Millisecond) // the loop runs
	workers := 0
	for _, p := range descendants(d.cmd.Process.Pid) {
		if strings.Contains(filepath.Base(strings.Fields(p.cmd + " ?")[0]), "python3") {
			workers++
		}
	}
	if workers == 0 {
		t.Fatal("no sandboxed Python worker runs")
	}
	killDaemon(t, d, pluginDir, dataDir)

	// A process the code starts itself (in a session of its own) outlives the host where
	// there is no PID namespace; the session's cgroup still holds it, and the runner
	// sweeps the cgroups of dead plugins when the next session opens.
	d = start(t, cfg)
	s, err = d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "leaves a child"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "python", Input: "import subprocess\nprint(subprocess.Popen(['sleep', '300'], start_new_session=True).pid)"})
	if err != nil || r.Status != "ok" {
		t.Fatalf("%+v %v", r, err)
	}
	sleepPID, err := strconv.Atoi(strings.TrimSpace(r.Stdout))
	if err != nil {
		t.Fatalf("child pid %q: %v", r.Stdout, err)
	}
	_, began, _, ok := procStat(sleepPID)
	if !ok {
		t.Fatalf("the child %d is not running", sleepPID)
	}
	child := proc{pid: sleepPID, start: began}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", sleepPID))
	t.Logf("the code's child: pid %d, %q", sleepPID, cmdline)
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Wait()
	time.Sleep(300 * time.Millisecond)
	if !child.running() {
		t.Log("the child died with the host (nothing outlived it; the sweep is not exercised)")
		return
	}
	d = start(t, cfg)
	s, err = d.c.CreateSession(ctx, client.CreateSessionRequest{Name: "next"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := d.c.Execute(ctx, s.ID, client.ExecuteRequest{Runner: "python", Input: "print(1)"}); err != nil || r.Status != "ok" {
		t.Fatalf("%+v %v", r, err)
	}
	for deadline := time.Now().Add(5 * time.Second); child.running(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(sleepPID, syscall.SIGKILL)
			t.Fatalf("the dead session's child %d still runs after the next session opened", sleepPID)
		}
	}
}
