package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/version"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// stopTimeout bounds how long killing a worker may take before it is reported as stuck.
const stopTimeout = 10 * time.Second

// pythonRunner is the runner.Runner of this plugin: one session per process, one sandboxed
// worker interpreter at a time for it, replaced when it dies or is killed.
type pythonRunner struct {
	log hclog.Logger

	mu     sync.Mutex
	set    *settings
	sb     *sandbox
	w      *worker       // current worker, nil while one starts
	wReady chan struct{} // closed when the worker being started is ready or failed
	wErr   error         // why the last start failed
	closed bool
	execs  map[string]*execution
	// slot serializes executions: the interpreter runs one at a time.
	slot chan struct{}

	probeMu sync.Mutex
	probe   *runner.Health

	// compiled is the worker's code compiled ahead, once precompile is done; stopCompile
	// ends it early.
	compiled    atomic.Pointer[compiledWorker]
	stopCompile context.CancelFunc
	opening     bool // guarded by mu: OpenSession was called
	// pre is an init spawned ahead for the session to come (guarded by mu): a Go
	// program's start, ~10 ms, is then no part of the session's cold start.
	pre *worker
	// spare is a disk image formatted ahead for the session to come (guarded by mu).
	spare *spareImage
}

// compiledWorker is the worker's code compiled by an interpreter, in the form
// compiledLoader runs.
type compiledWorker struct{ interpreter, code string }

func newRunner(log hclog.Logger) *pythonRunner {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &pythonRunner{log: log, execs: map[string]*execution{}, slot: make(chan struct{}, 1)}
}

// PluginInfo implements base.Plugin.
func (r *pythonRunner) PluginInfo() base.Info {
	caps := []string{"input:code/python", "python", "persistent_state", "streaming", "timeout", "cancel", "sandbox"}
	if os.Geteuid() == 0 {
		// The per-session uids: the host refuses API requests from them.
		caps = append(caps, fmt.Sprintf("%s%d-%d", runner.CapSandboxUIDs, uidBase, uidBase+uidRange-1))
	}
	return base.Info{
		Name: "python", Kind: base.KindRunner, Version: version.Version,
		ProtocolVersions: []uint32{base.ProtocolVersion},
		Capabilities:     caps,
		Description:      "Runs Python in one long-lived sandboxed interpreter per session (namespaces, cgroups, per-session uid, Landlock, seccomp).",
	}
}

// ConfigSchema implements base.Plugin.
func (r *pythonRunner) ConfigSchema() base.Schema { return configSchema() }

// Configure implements base.Plugin.
func (r *pythonRunner) Configure(_ context.Context, req base.ConfigureRequest) base.Diagnostics {
	set, ds := parseConfig(req, req.ValidateOnly)
	if ds.HasErrors() || req.ValidateOnly {
		return ds
	}
	if n := sweepSpares(set.dataDir); n > 0 {
		r.log.Info("removed spare disk images a killed runner process left half-made", "dir", filepath.Join(set.dataDir, spareDir), "removed", n)
	}
	if n := sweepProbes(set.dataDir); n > 0 {
		r.log.Info("removed health probe work dirs a killed runner process left", "dir", filepath.Join(set.dataDir, probeDir), "removed", n)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sb != nil {
		return append(ds, base.Errorf(nil, "the plugin serves an open session; it cannot be reconfigured"))
	}
	r.set = &set
	if c := r.compiled.Load(); !r.opening && !r.closed && (c == nil || c.interpreter != set.interpreter) {
		if r.stopCompile != nil {
			r.stopCompile()
		}
		ctx, cancel := context.WithCancel(context.Background())
		r.stopCompile = cancel
		go r.prepare(ctx, set)
	}
	return ds
}

// prepareDelay is how long a configured plugin waits for a session before it prepares
// for one: a process the host started for a session at once is opened within it and
// would gain nothing, while one that waits for a session (the host's pool of pre-started
// processes) saves a Go program's start and the worker's compilation at its cold start.
const prepareDelay = 150 * time.Millisecond

// prepare spawns an init for a session without network access, the default, and
// compiles the worker's code with the interpreter (isolated: no site, no environment),
// unless a session opens first.
func (r *pythonRunner) prepare(ctx context.Context, set settings) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(prepareDelay):
	}
	if !set.disable[featCgMemory] || !set.disable[featCgPids] || !set.disable[featCgCPU] {
		sweepStaleCgroups()
	}
	if self, err := os.Executable(); err == nil {
		if pre, err := spawnInit(self, sessionNamespaces(set, false), false, r.log); err == nil {
			keepAhead(r, &r.pre, pre, pre.discard)
		}
	}
	if ctx.Err() != nil {
		return
	}
	if sp := formatSpare(set); sp != nil {
		keepAhead(r, &r.spare, sp, sp.close)
	}
	if ctx.Err() != nil {
		return
	}
	interpreter := set.interpreter
	code, err := precompileWorker(ctx, interpreter)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("compile the worker ahead; it is compiled at each start instead", "error", err)
		}
		return
	}
	r.compiled.Store(&compiledWorker{interpreter: interpreter, code: code})
}

// keepAhead keeps v, made ahead for the session to come, in *slot (guarded by r.mu) while
// the runner still waits for that session and holds none; otherwise v is dropped.
func keepAhead[T comparable](r *pythonRunner, slot *T, v T, drop func()) {
	var none T
	r.mu.Lock()
	keep := !r.opening && !r.closed && *slot == none
	if keep {
		*slot = v
	}
	r.mu.Unlock()
	if !keep {
		drop()
	}
}

// precompileWorker returns the worker's code compiled by interpreter, marshalled, in
// base64: the form compiledLoader runs.
func precompileWorker(ctx context.Context, interpreter string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, interpreter, "-I", "-S", "-c",
		"import sys, marshal, binascii; sys.stdout.write(binascii.b2a_base64(marshal.dumps(compile(sys.stdin.read(), '<limit-worker>', 'exec')), newline=False).decode())")
	cmd.Env = []string{}
	cmd.Stdin = strings.NewReader(workerScript)
	out, err := cmd.Output()
	if err != nil {
		return "", err
	}
	code := string(out)
	if _, err := base64.StdEncoding.DecodeString(code); err != nil || code == "" {
		return "", fmt.Errorf("the interpreter wrote %d bytes that are not base64", len(out))
	}
	return code, nil
}

// OpenSession implements runner.Runner: it sets the sandbox up and starts the worker.
func (r *pythonRunner) OpenSession(ctx context.Context, s runner.Session) error {
	r.mu.Lock()
	switch {
	case r.set == nil:
		r.mu.Unlock()
		return errors.New("the plugin is not configured: call Configure first")
	case r.closed:
		r.mu.Unlock()
		return errors.New("the session is closed: this plugin process served its one session")
	case r.sb != nil:
		r.mu.Unlock()
		return fmt.Errorf("a session (%s) is already open in this process", r.sb.sess.ID)
	}
	set := *r.set
	r.opening = true
	if r.stopCompile != nil {
		r.stopCompile() // done or not, it must not compete with the session's start
	}
	pre := r.pre
	r.pre = nil
	spare := r.spare
	r.spare = nil
	r.mu.Unlock()
	defer spare.close()

	for k, v := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			if pre != nil {
				pre.discard()
			}
			return fmt.Errorf("open session %s: invalid environment variable %q: names must be non-empty without '=' or NUL, values without NUL", s.ID, k)
		}
	}
	sb, err := newSandbox(set, s, spare)
	if err != nil {
		if pre != nil {
			pre.discard()
		}
		return fmt.Errorf("open session %s: %w", s.ID, err)
	}
	if c := r.compiled.Load(); c != nil && c.interpreter == set.interpreter {
		sb.compiled = c.code
	}
	w, err := startWorkerFrom(ctx, sb, r.log.With("session", s.ID), pre)
	if err != nil {
		_ = sb.close(false)
		return fmt.Errorf("open session %s: %w", s.ID, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sb != nil || r.closed {
		_ = w.stop(stopTimeout)
		_ = sb.close(false)
		return errors.New("the session was opened or closed concurrently")
	}
	r.sb, r.w = sb, w
	go r.watch(w)
	r.log.Info("session opened", "session", s.ID, "python", w.python, "uid", sb.uid, "work_dir", sb.workDir)
	return nil
}

// SessionLimits implements runner.SessionLimiter: the open session's limits (the
// configured ones with the session's over them), so that the host gives an execution
// that names no timeout this runner's configured timeout rather than its own default.
func (r *pythonRunner) SessionLimits() runner.Limits {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sb == nil {
		return runner.Limits{}
	}
	return r.sb.limits
}

// ConfiguredLimits implements runner.LimitsReporter: every limit a session that sets
// none gets, from the configuration (its defaults where it sets none); a zero one (such as
// max_disk_bytes = 0) is no limit.
func (r *pythonRunner) ConfiguredLimits(req base.ConfigureRequest) (runner.Limits, error) {
	set, ds := parseConfig(req, false)
	if ds.HasErrors() {
		return runner.Limits{}, ds.Err()
	}
	return set.limits, nil
}

// watch replaces a worker that dies while no execution runs on it; an execution that
// sees its worker die handles that itself.
func (r *pythonRunner) watch(w *worker) {
	<-w.dead
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w == w && !w.busy && !r.closed {
		r.log.Warn("the Python worker died between executions; starting a fresh one", "how", w.exitDescription())
		r.replaceLocked(true)
	}
}

// replaceLocked drops the current worker and starts a fresh one in the background; the
// next execution waits for it. resetPending makes that execution report the state reset.
func (r *pythonRunner) replaceLocked(resetPending bool) {
	old := r.w
	r.w = nil
	ready := make(chan struct{})
	r.wReady = ready
	sb := r.sb
	go func() {
		if old != nil {
			if err := old.stop(stopTimeout); err != nil {
				r.log.Error("stop the old worker", "error", err)
			}
		}
		w, err := startWorker(context.Background(), sb, r.log.With("session", sb.sess.ID))
		defer close(ready)
		r.mu.Lock()
		stale := r.wReady != ready || r.closed
		switch {
		case stale:
		case err != nil:
			r.wReady, r.wErr = nil, err
		default:
			w.resetPending = resetPending
			r.w, r.wReady, r.wErr = w, nil, nil
			go r.watch(w)
		}
		r.mu.Unlock()
		switch {
		case stale && w != nil:
			_ = w.stop(stopTimeout)
		case err != nil:
			r.log.Error("start a fresh Python worker", "error", err)
		}
	}()
}

// acquireWorker waits for a live worker and marks it busy.
func (r *pythonRunner) acquireWorker(ctx context.Context) (*worker, bool, error) {
	for {
		r.mu.Lock()
		if r.closed || r.sb == nil {
			r.mu.Unlock()
			return nil, false, errors.New("no session is open")
		}
		w, ready := r.w, r.wReady
		switch {
		case w != nil && !w.isDead() && w.diskBroken():
			// Its filesystem broke since the last execution (a journal aborted when the
			// host's disk was full): a fresh worker checks and repairs it before it mounts.
			r.log.Warn("the session's filesystem recorded an error; restarting its worker to check and repair it", "device", w.diskDev)
			r.replaceLocked(true)
			ready = r.wReady
		case w != nil && !w.isDead():
			w.busy = true
			reset := w.resetPending
			w.resetPending = false
			r.mu.Unlock()
			return w, reset, nil
		case w != nil:
			r.replaceLocked(true)
			ready = r.wReady
		case ready == nil:
			// The last start failed: try again now, for this execution.
			r.replaceLocked(true)
			ready = r.wReady
		}
		r.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		r.mu.Lock()
		err := r.wErr
		r.mu.Unlock()
		if r.currentOrNil() == nil && err != nil {
			return nil, false, fmt.Errorf("start a fresh Python worker: %w", err)
		}
	}
}

func (r *pythonRunner) currentOrNil() *worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.w
}

// releaseWorker ends an execution's use of w; a worker that died, or whose filesystem
// broke (broken), is replaced. reset is
// the state reset the execution owed its host, reported says whether its result, which
// carries it, reaches the host: one that does not (the caller went away) leaves the reset
// for the next execution to report.
func (r *pythonRunner) releaseWorker(w *worker, reset, reported, broken bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w.busy = false
	owed := reset && !reported
	switch {
	case r.w != w || r.closed:
	case broken:
		// The session's filesystem broke: the worker, stuck with it, is replaced now.
		r.replaceLocked(owed)
	case w.isDead():
		r.replaceLocked(owed || !reset)
	case owed:
		// Should w die before the next execution, watch replaces it owing a reset anyway.
		w.resetPending = true
	}
}

// Execute implements runner.Runner.
func (r *pythonRunner) Execute(ctx context.Context, req runner.ExecuteRequest, emit func(runner.Event) error) (runner.Result, error) {
	ex := newExecution(req.ExecutionID)
	if req.ExecutionID != "" {
		r.mu.Lock()
		if _, dup := r.execs[req.ExecutionID]; dup {
			r.mu.Unlock()
			return runner.Result{}, fmt.Errorf("execution %q is already running", req.ExecutionID)
		}
		r.execs[req.ExecutionID] = ex
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			delete(r.execs, req.ExecutionID)
			r.mu.Unlock()
		}()
	}
	queued := time.Now()
	select {
	case r.slot <- struct{}{}:
	case <-ex.cancel:
		// Nothing ran: no exit status of a program, -1 as in the host's own results.
		return runner.Result{Status: runner.StatusCancelled, ExitCode: -1, FinishReason: "cancelled", Error: "execution cancelled before it started", Duration: time.Since(queued)}, nil
	case <-ctx.Done():
		return runner.Result{}, ctx.Err()
	}
	defer func() { <-r.slot }()

	r.mu.Lock()
	sb := r.sb
	r.mu.Unlock()
	if sb == nil {
		return runner.Result{}, errors.New("no session is open: call OpenSession first")
	}
	w, reset, err := r.acquireWorker(ctx)
	if err != nil {
		return runner.Result{}, err
	}
	timeout := sb.limits.Timeout
	if req.Timeout > 0 {
		timeout = req.Timeout
	}
	res, err := w.run(ctx, runRequest{
		ex: ex, code: req.Input, timeout: timeout, grace: sb.set.interruptGrace,
		maxOut: sb.limits.MaxOutputBytes, emit: emit, note: w.takeDiskNote(),
	})
	if reset {
		res.StateReset = true
	}
	// A filesystem that recorded an error during the execution (its journal aborted when
	// the host's disk was full: every later write fails with EROFS) stays broken while
	// mounted: the worker is replaced, and the fresh one has e2fsck repair it.
	broken := !w.isDead() && w.diskBroken()
	if broken {
		r.log.Warn("the session's filesystem recorded an error during the execution (was the host's disk full?); restarting its worker to check and repair it",
			"execution", req.ExecutionID, "device", w.diskDev)
		res.StateReset = true
		if err == nil {
			err = emit(runner.Event{Output: &runner.Output{Stream: runner.Stderr, Data: []byte(diskBrokenNote)}})
		}
	}
	// An error return carries no result to the host: the reset is not reported.
	r.releaseWorker(w, res.StateReset, err == nil, broken)
	return res, err
}

// Cancel implements runner.Runner.
func (r *pythonRunner) Cancel(_ context.Context, id string) (bool, error) {
	r.mu.Lock()
	ex, ok := r.execs[id]
	r.mu.Unlock()
	if !ok {
		return false, nil
	}
	ex.requestCancel()
	return true, nil
}

// Health implements runner.Runner. With a session open it reports the isolation of the
// running worker, checked when it started; before that, of a probe sandbox started once
// for the purpose.
func (r *pythonRunner) Health(ctx context.Context) (runner.Health, error) {
	r.mu.Lock()
	set, sb, w, wErr, closed := r.set, r.sb, r.w, r.wErr, r.closed
	r.mu.Unlock()
	switch {
	case set == nil:
		return runner.Health{Healthy: false, Message: "not configured"}, nil
	case closed:
		return runner.Health{Healthy: false, Message: "the session is closed"}, nil
	case sb == nil:
		return r.probeHealth(ctx, *set)
	case w == nil && wErr != nil:
		return runner.Health{Healthy: false, Message: "the Python worker cannot start: " + wErr.Error(), Isolation: sb.static.list()}, nil
	case w == nil:
		return runner.Health{Healthy: true, Message: "a fresh Python worker is starting", Isolation: sb.static.list()}, nil
	}
	msg := fmt.Sprintf("Python %s (%s), worker pid %d, uid %d, work dir %s", w.python, set.interpreter, w.pyPID, sb.uid, sb.workDir)
	if missing := unknownFeatures(w.rep, sb.baseline); missing != "" {
		// Only allow_weak_isolation lets such a session open.
		msg += "; WEAK ISOLATION (allow_weak_isolation): the code is not kept from the host and the API, for want of " + missing
	}
	return runner.Health{Healthy: true, Message: msg, Isolation: w.rep.list()}, nil
}

// probeHealth starts a throwaway sandbox with a worker, once, to report what isolation this
// machine enforces before any session is open.
func (r *pythonRunner) probeHealth(ctx context.Context, set settings) (runner.Health, error) {
	r.probeMu.Lock()
	defer r.probeMu.Unlock()
	if r.probe != nil {
		return *r.probe, nil
	}
	dir, unlock, err := makeProbeDir(set.dataDir)
	if err != nil {
		return runner.Health{}, fmt.Errorf("health probe: %w", err)
	}
	defer unlock()
	defer os.RemoveAll(dir)
	sb, err := newSandbox(set, runner.Session{ID: "health-probe-" + fmt.Sprint(os.Getpid()), WorkDir: dir}, nil)
	if err != nil {
		return runner.Health{Healthy: false, Message: "cannot set a sandbox up: " + err.Error()}, nil
	}
	// The probe reports what a session would lack rather than fail for it.
	sb.enforceBaseline = false
	w, err := startWorker(ctx, sb, r.log.With("probe", true))
	if err != nil {
		h := runner.Health{Healthy: false, Message: "the Python worker cannot start: " + err.Error(), Isolation: sb.static.list()}
		_ = sb.close(true)
		return h, nil
	}
	h := runner.Health{
		Healthy:   true,
		Message:   fmt.Sprintf("Python %s (%s); no session open, isolation checked in a probe sandbox", w.python, set.interpreter),
		Isolation: w.rep.list(),
	}
	if missing := unknownFeatures(w.rep, sb.baseline); missing != "" {
		// Not healthy either way: sessions are refused, or run with weak isolation.
		h.Healthy = false
		if set.allowWeak {
			h.Message = "WEAK ISOLATION: sessions open (allow_weak_isolation = true) but their code is not kept from the host and the API, for want of " + missing
		} else {
			h.Message = "sessions are refused: the sandbox would not keep the code from the host and the API, for want of " + missing + "; " + weakIsolationFix
		}
	}
	err = errors.Join(w.stop(stopTimeout), sb.close(true))
	if err != nil {
		return runner.Health{}, fmt.Errorf("health probe cleanup: %w", err)
	}
	r.probe = &h
	return h, nil
}

// CloseSession implements runner.Runner: it kills the worker, removes the cgroups and the
// work dir, and frees the uid.
func (r *pythonRunner) CloseSession(context.Context) error {
	return r.shutdown(true)
}

// shutdown stops everything; with removeWorkDir the session's work dir goes too. It is
// idempotent, and called again when the plugin process exits.
func (r *pythonRunner) shutdown(removeWorkDir bool) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	if r.stopCompile != nil {
		r.stopCompile()
	}
	pre := r.pre
	r.pre = nil
	sb, w, ready := r.sb, r.w, r.wReady
	r.w, r.wReady = nil, nil
	for _, ex := range r.execs {
		ex.requestCancel()
	}
	r.mu.Unlock()
	if pre != nil {
		pre.discard()
	}
	if sb == nil {
		return nil
	}
	var errs []error
	if w != nil {
		// An execution running on w uses its descriptors (the pidfd it interrupts through,
		// the memory probe) until it returns, which it does once w is dead: they are closed
		// after it has, or after stopTimeout if its emit is stuck.
		w.sessionClosed.Store(true)
		w.kill()
		select {
		case r.slot <- struct{}{}:
			defer func() { <-r.slot }()
		case <-time.After(stopTimeout):
		}
		errs = append(errs, w.stop(stopTimeout))
	}
	if ready != nil {
		// A replacement was being started: it sees closed and stops itself.
		select {
		case <-ready:
		case <-time.After(stopTimeout + startTimeout):
		}
	}
	errs = append(errs, sb.close(removeWorkDir))
	if err := errors.Join(errs...); err != nil {
		r.log.Error("close the session", "error", err)
		return fmt.Errorf("close session %s: %w", sb.sess.ID, err)
	}
	r.log.Info("session closed", "session", sb.sess.ID)
	return nil
}

var (
	_ runner.Runner         = (*pythonRunner)(nil)
	_ runner.LimitsReporter = (*pythonRunner)(nil)
)
