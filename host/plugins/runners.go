package plugins

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/sdk/runner"
)

// Runners hands out runner plugin processes: one fresh process per (session, runner),
// never shared and never reused, stopped when the session is released. A runner whose
// spec has a Pool keeps that many processes started and configured ahead of time; a
// session takes one and opens itself in it. Every runner's health is asked once before
// any session, of a pre-started process or, without a pool, of one started for it.
//
// A process that has run nothing for its spec's IdleTimeout is stopped, and so is the
// least recently used idle one when a session needs a process of a runner that has
// MaxProcesses of them: the session's next Get starts a fresh one, marked Replaced, as
// after a crash (the process's state is gone; what the session spent, which the host
// keeps, is not).
type Runners struct {
	logger hclog.Logger
	specs  map[string]Spec
	pools  map[string]*pool

	mu      sync.Mutex
	procs   map[runnerKey]*runnerEntry
	crashes int
	// restarts counts the session processes stopped for a reason that gives their
	// session a fresh one (RestartCrash…), by runner and reason; they only grow.
	restarts map[restartKey]uint64
	closed   bool
	// shuttingDown is set once the host shuts down (Stopping): a session's process that
	// ended is not replaced.
	shuttingDown bool
	// reset marks the sessions whose process of a runner was stopped for being idle or to
	// make room under MaxProcesses: the next process Get starts for them is Replaced.
	reset map[runnerKey]bool
	// stopping counts processes being stopped in the background (Retire, Died, a start
	// that outlived its stop); Close waits for it to reach zero, signalled by stopped.
	stopping int
	stopped  *sync.Cond
	// sandboxUIDs are the uid ranges the runners' processes said their sandboxed code
	// runs as (capability "sandbox_uids:LOW-HIGH").
	sandboxUIDs [][2]int
}

type runnerKey struct{ session, runner string }

type restartKey struct{ runner, reason string }

type runnerEntry struct {
	ready chan struct{} // closed once proc or err is set
	proc  *Process
	err   error
	// isolation is what the runner reported enforcing once its session was open.
	isolation []runner.IsolationFeature
	// dead marks a process found dead though its plugin client does not say it exited
	// (Handle.Died); guarded by Runners.mu.
	dead bool
	// closed marks a process stopped because its session was closed (Release: the
	// session was deleted), so that an execution it was running is told apart from one
	// whose process crashed (Handle.SessionClosed); guarded by Runners.mu.
	closed bool
	// inFlight counts the handles Get gave out that are not Done yet, and lastUsed is
	// when the last of them was, or when the process was started; an entry is stopped
	// for being idle only with none in flight. idle is the timer that does so. All three
	// are guarded by Runners.mu.
	inFlight int
	lastUsed time.Time
	idle     *time.Timer
}

// NewRunners returns the runners of the given specs, keyed by runner name, and starts
// filling the pool of each spec that has one.
func NewRunners(specs map[string]Spec, logger hclog.Logger) *Runners {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	r := &Runners{logger: logger, specs: specs, pools: map[string]*pool{}, procs: map[runnerKey]*runnerEntry{}, reset: map[runnerKey]bool{},
		restarts:    map[restartKey]uint64{},
		sandboxUIDs: [][2]int{{runner.SandboxUIDBase, runner.SandboxUIDBase + runner.SandboxUIDCount - 1}}}
	r.stopped = sync.NewCond(&r.mu)
	for name, spec := range specs {
		// A runner without pre-started processes has a pool of none, which asks the
		// runner's health once, at start, as a pool's first process is asked.
		r.pools[name] = newPool(spec, max(spec.Pool, 0), logger.With("pool", name), r.declared)
	}
	return r
}

// Names lists the configured runners.
func (r *Runners) Names() []string {
	out := make([]string, 0, len(r.specs))
	for n := range r.specs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Has reports whether a runner of that name is configured.
func (r *Runners) Has(name string) bool {
	_, ok := r.specs[name]
	return ok
}

// UserBounds returns what a user's session that may run the named runner may ask of it:
// the limits its configuration gives a session that sets none (reported false when the
// runner did not say, or is not configured), and whether allow_network is the user's to
// set (the block's allow_user_network).
func (r *Runners) UserBounds(name string) (limits runner.Limits, reported, network bool) {
	spec, ok := r.specs[name]
	if !ok {
		return runner.Limits{}, false, false
	}
	return spec.Limits, spec.LimitsReported, spec.AllowUserNetwork
}

// Handle is a session's runner process.
type Handle struct {
	runner.Runner
	Process *Process
	// Fresh is true when the process was started by this call.
	Fresh bool
	// Replaced is true when this call started a process because the session's previous
	// one had died, or was stopped for being idle or to make room for another session's
	// (see Runners): whatever state it held is gone.
	Replaced bool
	// Spent, when set, is called by Execute with the figures of a result's usage extras
	// whose keys start with runner.SpentPrefix: the session's running totals, such as what
	// a budget has spent, which the session's next process must be opened with
	// (runner.Session.Spent) for the budget to outlive this one. It is not called for a
	// result without such figures, nor for a failed execution. Its context outlives the
	// caller's, for a few seconds. An error it returns is logged: the execution's result
	// stands.
	Spent func(ctx context.Context, spent map[string]float64) error

	runners *Runners
	key     runnerKey
	entry   *runnerEntry
	done    sync.Once
}

// Done tells the runners the caller is finished with the handle (its execution ended):
// from then on, with no other handle of the process in flight, its idle time counts. A
// handle never Done keeps its process from being stopped for being idle. Done is safe to
// call more than once.
func (h *Handle) Done() {
	r := h.runners
	if r == nil || h.entry == nil {
		return
	}
	h.done.Do(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		e := h.entry
		e.inFlight--
		e.lastUsed = time.Now()
		idle := r.specs[h.key.runner].IdleTimeout
		if e.inFlight > 0 || idle <= 0 || r.closed || r.procs[h.key] != e {
			return
		}
		if e.idle != nil {
			e.idle.Stop()
		}
		key := h.key
		e.idle = time.AfterFunc(idle, func() { r.reapIdle(key, e, idle) })
	})
}

// reapIdle stops the process of e if it is still the session's and has run nothing for
// idle: the timer that calls it may have lost a race with a Get.
func (r *Runners) reapIdle(key runnerKey, e *runnerEntry, idle time.Duration) {
	r.mu.Lock()
	if r.closed || r.procs[key] != e || e.inFlight > 0 || time.Since(e.lastUsed) < idle {
		r.mu.Unlock()
		return
	}
	r.retireLocked(key, e, RestartIdle)
	r.mu.Unlock()
	r.logger.Info("runner process idle; stopped, the session's next execution gets a fresh one (state_reset)",
		"plugin", e.proc.Spec.ID(), "session", key.session, "pid", e.proc.PID, "idle_timeout", idle)
}

// retireLocked drops the session's process of e, idle (nothing in flight), and kills it
// in the background, returning a channel closed once it is stopped; the session's next
// Get starts a fresh process, Replaced. It is not asked to close the session first: a
// runner's CloseSession ends the session for good (the Python runner removes its working
// directory), and a retired session goes on, so its process ends as a crashed one does,
// leaving the session's files to its next process (the host removes them when the
// session is deleted). The process counts as a restart for reason, or as a crash if it was
// found dead. r.mu is held.
func (r *Runners) retireLocked(key runnerKey, e *runnerEntry, reason string) <-chan struct{} {
	delete(r.procs, key)
	r.reset[key] = true
	if e.idle != nil {
		e.idle.Stop()
	}
	switch {
	case e.dead:
		// Counted by Died.
	case e.proc.Exited():
		// Found dead before Get could count it.
		r.restartedLocked(key.runner, RestartCrash)
	default:
		r.restartedLocked(key.runner, reason)
	}
	done := make(chan struct{})
	r.stopLocked(func() {
		defer close(done)
		e.proc.Kill()
	})
	return done
}

// makeRoomLocked, when the runner has MaxProcesses processes for sessions, retires the
// least recently used of those with nothing in flight, returning a channel closed once it
// is stopped (nil when there was room), or a RunnerBusyError when every one is busy.
// r.mu is held.
func (r *Runners) makeRoomLocked(spec Spec) (<-chan struct{}, error) {
	if spec.MaxProcesses <= 0 {
		return nil, nil
	}
	n := 0
	var (
		victim    *runnerEntry
		victimKey runnerKey
	)
	for k, e := range r.procs {
		if k.runner != spec.Name {
			continue
		}
		n++
		// An entry with nothing in flight has its process: its starter's handle is Done.
		if e.inFlight == 0 && e.proc != nil && (victim == nil || e.lastUsed.Before(victim.lastUsed)) {
			victim, victimKey = e, k
		}
	}
	if n < spec.MaxProcesses {
		return nil, nil
	}
	if victim == nil {
		return nil, &RunnerBusyError{Runner: spec.Name, Max: spec.MaxProcesses}
	}
	r.logger.Info("runner at max_processes; stopping the least recently used idle process, its session's next execution gets a fresh one (state_reset)",
		"plugin", spec.ID(), "session", victimKey.session, "pid", victim.proc.PID, "max_processes", spec.MaxProcesses)
	return r.retireLocked(victimKey, victim, RestartMaxProcesses), nil
}

// ErrRunnerBusy marks a Get refused because every process its runner may have
// (max_processes) is running an execution: the API answers 503 with Retry-After.
var ErrRunnerBusy = errors.New("runner busy")

// RunnerBusyError is the error of a Get refused for the runner's max_processes.
type RunnerBusyError struct {
	// Runner is the runner's name, and Max its max_processes.
	Runner string
	Max    int
}

func (e *RunnerBusyError) Error() string {
	return fmt.Sprintf("runner %q is busy: all %d of its processes (its max_processes) are running executions; retry in a few seconds", e.Runner, e.Max)
}

// Is reports ErrRunnerBusy.
func (e *RunnerBusyError) Is(target error) bool { return target == ErrRunnerBusy }

// spentTimeout bounds Handle.Spent.
const spentTimeout = 5 * time.Second

// Execute runs an execution in the session's process (see runner.Runner), and hands the
// session's running totals its result reports to Spent before returning it.
func (h *Handle) Execute(ctx context.Context, req runner.ExecuteRequest, emit func(runner.Event) error) (runner.Result, error) {
	res, err := h.Runner.Execute(ctx, req, emit)
	if err != nil || h.Spent == nil {
		return res, err
	}
	if spent := SpentOf(res.Usage.Extra); spent != nil {
		// Kept even when the caller went away: what was spent was spent.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), spentTimeout)
		serr := h.Spent(sctx, spent)
		cancel()
		if serr != nil && h.runners != nil {
			h.runners.logger.Error("could not keep what the session spent with the runner; a fresh process of the session's would start from less",
				"session", h.key.session, "runner", h.key.runner, "error", serr)
		}
	}
	return res, nil
}

// SpentOf returns the figures of usage extras whose keys start with runner.SpentPrefix
// and whose values are finite and not negative, or nil when there are none.
func SpentOf(extra map[string]float64) map[string]float64 {
	var out map[string]float64
	for k, v := range extra {
		if !strings.HasPrefix(k, runner.SpentPrefix) || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			continue
		}
		if out == nil {
			out = map[string]float64{}
		}
		out[k] = v
	}
	return out
}

// SessionClosed reports whether the handle's process was stopped because its session was
// closed (Release, when the session is deleted): an execution it was running failed for
// that reason, not because the runner crashed.
func (h *Handle) SessionClosed() bool {
	r := h.runners
	if r == nil || h.entry == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return h.entry.closed
}

// Retire stops the session's process when the runner failed in a way that leaves its state
// unknown (it returned an error or panicked in Execute, or never ended an execution): the
// session's next Get starts a fresh process. It returns without waiting for the process to
// end. A process already dead is left to Get, which counts it as a crash.
func (h *Handle) Retire() {
	r := h.runners
	if r == nil || h.Process.Exited() {
		return
	}
	r.mu.Lock()
	e, ok := r.procs[h.key]
	if !ok || e.proc != h.Process {
		r.mu.Unlock()
		return
	}
	delete(r.procs, h.key)
	r.restartedLocked(h.key.runner, RestartFailed)
	r.stopLocked(h.Process.Kill)
	r.mu.Unlock()
	r.logger.Warn("runner process failed an execution; stopping it, the session's next execution gets a fresh one",
		"plugin", h.Process.Spec.ID(), "session", h.key.session, "pid", h.Process.PID)
}

// stopLocked runs stop (which stops a process) on a goroutine of its own that Close
// waits for, so no process outlives Close; r.mu is held.
func (r *Runners) stopLocked(stop func()) {
	r.stopping++
	go func() {
		defer func() {
			r.mu.Lock()
			r.stopping--
			if r.stopping == 0 {
				r.stopped.Broadcast()
			}
			r.mu.Unlock()
		}()
		stop()
	}()
}

// Died marks a process that failed an execution and no longer answers as dead, so that
// the session's next execution gets a fresh one (Get replaces it and counts the crash),
// and health lists it unhealthy until then. Get replaces an exited process by itself, but
// a dead one is not always exited yet: go-plugin calls it so only once its stdout and
// stderr are closed, which a child it left behind may hold open; stopping the process
// also ends its process group, and so that child.
func (h *Handle) Died() {
	r := h.runners
	if r == nil {
		return
	}
	r.mu.Lock()
	e, ok := r.procs[h.key]
	if !ok || e.proc != h.Process || e.dead {
		r.mu.Unlock()
		return
	}
	e.dead = true
	r.restartedLocked(h.key.runner, RestartCrash)
	r.stopLocked(h.Process.Kill)
	r.mu.Unlock()
}

// Get returns the session's process for the named runner, starting and opening it if
// there is none or the previous one died.
func (r *Runners) Get(ctx context.Context, sess runner.Session, name string) (*Handle, error) {
	spec, ok := r.specs[name]
	if !ok {
		return nil, fmt.Errorf("no runner %q is configured", name)
	}
	key := runnerKey{sess.ID, name}
	replaced := false
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, fmt.Errorf("runner %q: host is shutting down", name)
		}
		e, ok := r.procs[key]
		if !ok {
			room, err := r.makeRoomLocked(spec)
			if err != nil {
				r.mu.Unlock()
				return nil, err
			}
			e = &runnerEntry{ready: make(chan struct{}), inFlight: 1, lastUsed: time.Now()}
			r.procs[key] = e
			reset := r.reset[key]
			delete(r.reset, key)
			r.mu.Unlock()
			if room != nil {
				// The process retired to make room is gone before this one starts: a
				// cap on processes is a cap on their memory.
				<-room
			}
			p, err := r.start(ctx, spec, sess)
			r.mu.Lock()
			e.proc, e.err = p, err
			if (err != nil || r.closed) && r.procs[key] == e {
				delete(r.procs, key)
			}
			if err != nil && reset {
				// The session's next process is still the first since its state was lost.
				r.reset[key] = true
			}
			closed := r.closed
			close(e.ready)
			r.mu.Unlock()
			if err != nil {
				return nil, err
			}
			if closed {
				p.Kill()
				return nil, fmt.Errorf("runner %q: host is shutting down", name)
			}
			go r.isolationOf(e, spec, sess.ID)
			return &Handle{Runner: p.Impl.(runner.Runner), Process: p, Fresh: true, Replaced: replaced || reset, runners: r, key: key, entry: e}, nil
		}
		r.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("runner %q: waiting for its process: %w", name, ctx.Err())
		}
		if e.err != nil {
			// Another caller's start failed; try our own.
			continue
		}
		r.mu.Lock()
		if r.procs[key] != e {
			// Stopped meanwhile (retired, idle, or to make room): start another.
			r.mu.Unlock()
			continue
		}
		if !e.dead && !e.proc.Exited() {
			e.inFlight++
			r.mu.Unlock()
			return &Handle{Runner: e.proc.Impl.(runner.Runner), Process: e.proc, runners: r, key: key, entry: e}, nil
		}
		if r.shuttingDown {
			if r.procs[key] == e {
				delete(r.procs, key)
			}
			r.mu.Unlock()
			r.logger.Info("runner process ended while the host shuts down; not replaced",
				"plugin", spec.ID(), "session", sess.ID, "pid", e.proc.PID)
			e.proc.Kill()
			return nil, fmt.Errorf("runner %q: its process ended while the host shuts down", name)
		}
		r.mu.Unlock()
		r.logger.Error("runner process died; starting a fresh one, the session's runner state is lost",
			"plugin", spec.ID(), "session", sess.ID, "pid", e.proc.PID)
		r.mu.Lock()
		if r.procs[key] == e {
			delete(r.procs, key)
			if !e.dead { // else counted by Died
				r.restartedLocked(name, RestartCrash)
			}
		}
		r.mu.Unlock()
		e.proc.Kill()
		replaced = true
	}
}

// start gives the session a process of its own, open for it: a pre-started one from the
// runner's pool when there is one, else one started now.
func (r *Runners) start(ctx context.Context, spec Spec, sess runner.Session) (*Process, error) {
	if pl := r.pools[spec.Name]; pl != nil {
		defer pl.done()
		if p := pl.take(); p != nil {
			p.watch.session.Store(&sess.ID) // its stray output names the session
			err := p.Impl.(runner.Runner).OpenSession(ctx, sess)
			if err == nil {
				r.opened(spec, sess, p)
				return p, nil
			}
			dead := p.Exited() || p.Ping() != nil
			p.Kill()
			if !dead {
				return nil, fmt.Errorf("runner %q: %w", spec.Name, err)
			}
			// It died between the pool's last look and now: start one as if the pool
			// were empty.
			r.logger.Warn("a pre-started runner process was dead when taken; starting a fresh one",
				"plugin", spec.ID(), "session", sess.ID, "pid", p.PID, "error", err)
		}
	}
	p, err := Launch(ctx, spec, r.logger.With("session", sess.ID))
	if err != nil {
		return nil, err
	}
	if err := p.Configure(ctx, false); err != nil {
		p.Kill()
		return nil, err
	}
	if err := p.Impl.(runner.Runner).OpenSession(ctx, sess); err != nil {
		p.Kill()
		return nil, fmt.Errorf("runner %q: %w", spec.Name, err)
	}
	r.opened(spec, sess, p)
	return p, nil
}

// opened logs a process just opened for sess; its uptime says how long it waited in the
// pool, if it came from there.
func (r *Runners) opened(spec Spec, sess runner.Session, p *Process) {
	r.declared(spec, p)
	r.logger.Debug("runner process opened", "plugin", spec.ID(), "session", sess.ID, "pid", p.PID, "uptime", p.Uptime())
}

// declared records the sandbox uid ranges a runner process just started says its code runs
// as, so the API refuses requests from them from then on (before any session opens in
// it: a pool's process is started ahead of its session).
func (r *Runners) declared(spec Spec, p *Process) {
	for _, c := range p.Info.Capabilities {
		rest, ok := strings.CutPrefix(c, runner.CapSandboxUIDs)
		if !ok {
			continue
		}
		lo, hi, ok := parseUIDRange(rest)
		if !ok {
			r.logger.Warn("runner declares an unreadable sandbox uid range; ignored", "plugin", spec.ID(), "capability", c)
			continue
		}
		r.mu.Lock()
		if !slices.Contains(r.sandboxUIDs, [2]int{lo, hi}) {
			r.sandboxUIDs = append(r.sandboxUIDs, [2]int{lo, hi})
		}
		r.mu.Unlock()
	}
}

// parseUIDRange reads "LOW-HIGH".
func parseUIDRange(s string) (lo, hi int, ok bool) {
	a, b, found := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if !found || err1 != nil || err2 != nil || lo <= 0 || hi < lo {
		return 0, 0, false
	}
	return lo, hi, true
}

// SandboxUID reports whether uid is one the Python runner's sandboxes run code as (on
// any host of this machine: runner.SandboxUIDBase), or one another runner process started
// so far said its sandboxed code runs as.
func (r *Runners) SandboxUID(uid int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rg := range r.sandboxUIDs {
		if uid >= rg[0] && uid <= rg[1] {
			return true
		}
	}
	return false
}

// isolationOf asks the process of e, just opened for a session, what isolation it
// enforces, for the health report. It runs beside the session's first execution rather
// than before it; a runner that cannot say is still usable, and the report then says
// nothing rather than guess.
func (r *Runners) isolationOf(e *runnerEntry, spec Spec, session string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	h, err := e.proc.Impl.(runner.Runner).Health(ctx)
	if err != nil {
		r.logger.Warn("runner health after open failed", "plugin", spec.ID(), "session", session, "error", err)
		return
	}
	r.mu.Lock()
	e.isolation = h.Isolation
	r.mu.Unlock()
}

// Release closes and stops every runner process of a session.
func (r *Runners) Release(ctx context.Context, sessionID string) {
	r.mu.Lock()
	var entries []*runnerEntry
	for k, e := range r.procs {
		if k.session == sessionID {
			entries = append(entries, e)
			e.closed = true
			delete(r.procs, k)
			if e.idle != nil {
				e.idle.Stop()
			}
		}
	}
	for k := range r.reset {
		if k.session == sessionID {
			delete(r.reset, k)
		}
	}
	r.mu.Unlock()
	r.stopAll(ctx, entries, true)
}

// stopAll stops each process, in parallel: with closeSession, after closing its session
// politely (briefly), for a session that ends; without, as a retired one is, for a
// session that goes on (a runner's CloseSession ends the session for good: the Python
// runner removes its files). A process still starting when ctx ends is stopped once
// started, in the background.
func (r *Runners) stopAll(ctx context.Context, entries []*runnerEntry, closeSession bool) {
	var wg sync.WaitGroup
	for _, e := range entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-e.ready:
			default:
				select {
				case <-e.ready:
				case <-ctx.Done():
					// Still starting: stop it once it has started, without waiting.
					r.mu.Lock()
					r.stopLocked(func() {
						<-e.ready
						if e.proc != nil {
							e.proc.Kill()
						}
					})
					r.mu.Unlock()
					return
				}
			}
			if e.proc == nil {
				return
			}
			if !closeSession {
				e.proc.Kill()
				return
			}
			closeProcess(ctx, e.proc)
		}()
	}
	wg.Wait()
}

// closeProcess closes the session of a runner process politely (for at most
// runner.CloseSessionTimeout) and kills it.
func closeProcess(ctx context.Context, p *Process) {
	if !p.Exited() {
		cctx, cancel := context.WithTimeout(ctx, runner.CloseSessionTimeout)
		_ = p.Impl.(runner.Runner).CloseSession(cctx)
		cancel()
	}
	p.Kill()
}

// Idle is the number of pre-started processes waiting in the named runner's pool.
func (r *Runners) Idle(name string) int {
	if pl := r.pools[name]; pl != nil {
		return pl.idleCount()
	}
	return 0
}

// Statuses describes every live runner process, then each runner's idle pre-started
// processes (Kind KindPool).
func (r *Runners) Statuses() []Status {
	out := r.sessionStatuses()
	for _, name := range r.Names() {
		if pl := r.pools[name]; pl != nil {
			out = append(out, pl.statuses()...)
		}
	}
	return out
}

func (r *Runners) sessionStatuses() []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Status
	for k, e := range r.procs {
		select {
		case <-e.ready:
		default:
			continue
		}
		if e.proc == nil {
			continue
		}
		out = append(out, Status{
			Name: k.runner, Kind: e.proc.Spec.Kind, Version: e.proc.Info.Version, PID: e.proc.PID,
			Healthy: !e.dead && !e.proc.Exited(), Session: k.session, Isolation: e.isolation, Transport: e.proc.Transport(),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Session != out[j].Session {
			return out[i].Session < out[j].Session
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// restartedLocked counts a session process of the runner stopped for reason, its
// session's next execution getting a fresh one; r.mu is held.
func (r *Runners) restartedLocked(runner, reason string) {
	if reason == RestartCrash {
		r.crashes++
	}
	r.restarts[restartKey{runner, reason}]++
}

// RestartCounts counts, for each configured runner and each reason, its processes that
// were replaced since start: those of sessions (found dead, stopped after failing an
// execution, for being idle, to make room under max_processes) and the idle pre-started
// ones of its pool found dead (Kind KindPool, reason RestartCrash). Every runner has an
// entry for every reason, zero included; the counts only grow.
func (r *Runners) RestartCounts() []RestartCount {
	r.mu.Lock()
	var out []RestartCount
	for _, name := range r.Names() {
		for _, reason := range []string{RestartCrash, RestartFailed, RestartIdle, RestartMaxProcesses} {
			out = append(out, RestartCount{Kind: r.specs[name].Kind, Name: name, Reason: reason, Count: r.restarts[restartKey{name, reason}]})
		}
	}
	r.mu.Unlock()
	for _, name := range r.Names() {
		if pl := r.pools[name]; pl != nil && pl.size > 0 {
			pl.mu.Lock()
			out = append(out, RestartCount{Kind: KindPool, Name: name, Reason: RestartCrash, Count: uint64(pl.discarded)})
			pl.mu.Unlock()
		}
	}
	return out
}

// Crashes counts runner processes found dead since start.
func (r *Runners) Crashes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.crashes
}

// Stopping tells the runners the host is shutting down: the pools stop refilling and their
// idle processes are stopped (in the background), the sessions' processes go on serving
// the running executions, but one that ends from now on (systemd, stopping limitd,
// signals every process of its unit) is logged at INFO and not replaced.
func (r *Runners) Stopping() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shuttingDown {
		return
	}
	r.shuttingDown = true
	for _, e := range r.procs {
		select {
		case <-e.ready:
			if e.proc != nil {
				e.proc.expectEnd()
			}
		default:
		}
	}
	for _, pl := range r.pools {
		r.stopLocked(pl.close) // Close waits for it
	}
}

// Close stops every runner process, the pre-started ones too, and returns once they are
// all gone (those stopped in the background included); later Get calls fail. The
// sessions are not closed (they go on when the host starts again, with their files).
func (r *Runners) Close(ctx context.Context) {
	r.mu.Lock()
	r.closed = true
	entries := make([]*runnerEntry, 0, len(r.procs))
	for k, e := range r.procs {
		entries = append(entries, e)
		delete(r.procs, k)
		if e.idle != nil {
			e.idle.Stop()
		}
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, pl := range r.pools {
		wg.Add(1)
		go func() { defer wg.Done(); pl.close() }()
	}
	// The sessions go on after the host's restart: their processes stop as retired ones
	// do, their sessions not closed, so a session's files outlive the host.
	r.stopAll(ctx, entries, false)
	wg.Wait()
	r.mu.Lock()
	for r.stopping > 0 {
		r.stopped.Wait()
	}
	r.mu.Unlock()
}
