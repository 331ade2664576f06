package plugins

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/sdk/runner"
)

// KindPool is the Kind of the health entries of pre-started runner processes: each idle
// process is one entry (its Name is the runner's), so the pool's idle count is their
// number. They are not runner entries, which all belong to a session.
const KindPool = "pool"

// poolCheckInterval is how often a pool looks for idle processes that died.
var poolCheckInterval = time.Second

// poolHealthTimeout bounds the health check of a pool's first process (the Python runner
// starts a sandbox for it).
var poolHealthTimeout = 30 * time.Second

// poolQuiet is how long a pool that still has an idle process waits after a session
// opened before it starts another: the start (certificates on both sides) is CPU-heavy,
// and the session's first executions should not compete with it.
var poolQuiet = 250 * time.Millisecond

// pool keeps up to size processes of one runner started, handshaken and configured with
// the runner block's configuration, but not open for any session: starting a plugin
// process (with AutoMTLS, a certificate on each side) is most of a session's cold start.
// take hands a process out for good; the session that takes it opens itself in it, and
// it is killed when the session is released, never returned. The pool refills in the
// background, replaces an idle process that died, and kills the idle ones on close.
//
// A pool of size 0 keeps no process: it starts one only to ask the runner's health
// before any session (checkHealth), then stops it, so that a runner without pre-started
// processes is reported unhealthy from the start as one with them is.
type pool struct {
	spec     Spec
	size     int
	logger   hclog.Logger
	interval time.Duration
	// started, when set, hears of each process the pool started (the host records the
	// sandbox uids it declares).
	started func(Spec, *Process)

	mu        sync.Mutex
	idle      []*Process
	lastErr   error // why the last start failed, nil once one succeeds
	lastErrAt time.Time
	failures  int // consecutive failed starts, for the backoff
	discarded int // idle processes found dead
	// opening counts taken processes whose session is still being opened: the pool
	// waits for them before it refills, so the refill (a process start is CPU-heavy)
	// does not slow the session down.
	opening int
	// opened is when a session last finished opening in a taken process.
	opened time.Time
	closed bool
	// checked says a process of the pool answered Health before any session opened in it;
	// sick is that answer when it was not healthy: the runner says every session would be
	// refused or run unsafely on this machine (the Python runner's sandbox lacking the
	// isolation that keeps code from the host), which makes the host degraded.
	checked bool
	sick    *runner.Health

	ctx     context.Context // cancelled by close, so a start in flight stops
	cancel  context.CancelFunc
	wake    chan struct{}
	stopped chan struct{}
}

// newPool starts filling a pool of size processes for spec.
func newPool(spec Spec, size int, logger hclog.Logger, started func(Spec, *Process)) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pool{
		spec: spec, size: size, logger: logger, interval: poolCheckInterval, started: started,
		ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1), stopped: make(chan struct{}),
	}
	go p.run()
	return p
}

// run keeps the pool full until close (a pool of size 0: see probe).
func (p *pool) run() {
	defer close(p.stopped)
	if p.size == 0 {
		p.probe()
		return
	}
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.prune()
		p.mu.Lock()
		need, failures := p.size-len(p.idle), p.failures
		var wait time.Duration
		if len(p.idle) > 0 {
			wait = poolQuiet - time.Since(p.opened)
		}
		if p.opening > 0 {
			need = 0
		}
		p.mu.Unlock()
		if need > 0 && wait > 0 {
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(wait):
			}
			continue
		}
		if need <= 0 {
			select {
			case <-p.ctx.Done():
				return
			case <-p.wake:
			case <-t.C:
			}
			continue
		}
		if failures > 0 {
			// A runner that cannot start now (a binary replaced by one that does not match
			// its pin, a broken interpreter) is retried with backoff, not in a loop.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(backoff(failures)):
			}
		}
		proc, err := p.start()
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			if proc != nil {
				proc.Kill()
			}
			return
		}
		if err != nil {
			p.failures++
			p.lastErr, p.lastErrAt = err, time.Now()
			p.mu.Unlock()
			p.logger.Error("pre-start a runner process", "plugin", p.spec.ID(), "error", err, "next_attempt_in", backoff(failures+1))
			continue
		}
		p.failures, p.lastErr = 0, nil
		p.idle = append(p.idle, proc)
		idle := len(p.idle)
		p.mu.Unlock()
		p.logger.Debug("runner process pre-started", "plugin", p.spec.ID(), "pid", proc.PID, "idle", idle)
	}
}

// probe, for a pool of size 0, starts one process to ask the runner's health before any
// session, and stops it: once it answered, or when the pool closes. A start that fails,
// or a process that does not answer, is tried again with backoff, the failed start
// reported as a pool's (statuses).
func (p *pool) probe() {
	for {
		p.mu.Lock()
		failures, done := p.failures, p.checked || p.closed
		p.mu.Unlock()
		if done {
			return
		}
		if failures > 0 {
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(backoff(failures)):
			}
		}
		proc, err := p.start()
		if proc != nil {
			proc.Kill()
		}
		p.mu.Lock()
		switch {
		case err != nil:
			p.failures++
			p.lastErr, p.lastErrAt = err, time.Now()
		case !p.checked:
			p.failures++ // it did not answer (checkHealth logged it): ask another
		default:
			p.failures, p.lastErr = 0, nil
		}
		p.mu.Unlock()
		if err != nil {
			p.logger.Error("start a runner process to check its health", "plugin", p.spec.ID(), "error", err, "next_attempt_in", backoff(failures+1))
		}
	}
}

// start launches and configures one process: everything but opening a session. It is
// not cancelled by close, which waits for it (bounded by the start timeout) and kills
// what it started: a launch cancelled half-way could leave a process behind.
func (p *pool) start() (*Process, error) {
	ctx := context.Background()
	proc, err := Launch(ctx, p.spec, p.logger)
	if err != nil {
		return nil, err
	}
	if err := proc.Configure(ctx, false); err != nil {
		proc.Kill()
		return nil, err
	}
	if p.started != nil {
		p.started(p.spec, proc)
	}
	p.checkHealth(ctx, proc)
	return proc, nil
}

// checkHealth asks the pool's first process that answers, before it is idle (no session
// opens in it meanwhile), how the runner fares on this machine. Once is enough: what it
// reports (the isolation the machine allows) is the same for every process.
func (p *pool) checkHealth(ctx context.Context, proc *Process) {
	p.mu.Lock()
	checked := p.checked
	p.mu.Unlock()
	if checked {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, poolHealthTimeout)
	h, err := proc.Impl.(runner.Runner).Health(ctx)
	cancel()
	if err != nil {
		p.logger.Warn("a pre-started runner process did not answer its health check; the next one is asked", "plugin", p.spec.ID(), "pid", proc.PID, "error", err)
		return
	}
	p.mu.Lock()
	p.checked = true
	if !h.Healthy {
		p.sick = &h
	}
	p.mu.Unlock()
	if !h.Healthy {
		p.logger.Error("the runner reports itself not healthy before any session; GET /v1/health reports it", "plugin", p.spec.ID(), "message", h.Message)
	}
}

// prune drops and kills the idle processes that died.
func (p *pool) prune() {
	p.mu.Lock()
	var dead []*Process
	live := p.idle[:0]
	for _, proc := range p.idle {
		if proc.Exited() {
			dead = append(dead, proc)
		} else {
			live = append(live, proc)
		}
	}
	clear(p.idle[len(live):])
	p.idle = live
	p.discarded += len(dead)
	p.mu.Unlock()
	for _, proc := range dead {
		p.logger.Warn("a pre-started runner process died while idle; replacing it", "plugin", p.spec.ID(), "pid", proc.PID)
		proc.Kill()
	}
}

// take hands out the oldest live idle process, or nil when there is none (the caller
// starts one itself). The pool refills once the caller calls done, when the session is
// open (or failed to open).
func (p *pool) take() *Process {
	p.mu.Lock()
	p.opening++
	p.mu.Unlock()
	for {
		p.mu.Lock()
		if p.closed || len(p.idle) == 0 {
			p.mu.Unlock()
			return nil
		}
		proc := p.idle[0]
		p.idle[0] = nil
		p.idle = p.idle[1:]
		dead := proc.Exited()
		if dead {
			p.discarded++
		}
		p.mu.Unlock()
		if !dead {
			return proc
		}
		p.logger.Warn("a pre-started runner process died while idle; discarded", "plugin", p.spec.ID(), "pid", proc.PID)
		proc.Kill()
	}
}

// done ends a take: the session is open, or failed to open. The pool refills.
func (p *pool) done() {
	p.mu.Lock()
	p.opening--
	p.opened = time.Now()
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// idleCount is the number of idle processes.
func (p *pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// statuses lists each live idle process (Restarts counts the idle ones that died and were
// replaced), or, when there is none because starting one failed, one unhealthy entry
// saying why. When the runner said it is not healthy before any session (checkHealth),
// every entry, or one with no process when none is idle, is unhealthy with its message as
// Detail.
func (p *pool) statuses() []Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Status, 0, len(p.idle))
	for _, proc := range p.idle {
		if proc.Exited() {
			continue // discarded at the next check
		}
		out = append(out, Status{
			Name: p.spec.Name, Kind: KindPool, Version: proc.Info.Version, PID: proc.PID,
			Healthy: true, Restarts: p.discarded, Transport: proc.Transport(),
		})
	}
	if len(out) == 0 && p.lastErr != nil {
		what := "cannot pre-start a runner process"
		if p.size == 0 {
			what = "cannot start a runner process to check its health"
		}
		out = append(out, Status{
			Name: p.spec.Name, Kind: KindPool, Restarts: p.discarded,
			LastError:   fmt.Sprintf("%s (%d attempts): %v", what, p.failures, p.lastErr),
			LastErrorAt: p.lastErrAt.UTC().Format(time.RFC3339),
		})
	}
	if p.sick != nil {
		if len(out) == 0 {
			out = append(out, Status{Name: p.spec.Name, Kind: KindPool, Restarts: p.discarded})
		}
		for i := range out {
			out[i].Healthy = false
			out[i].Detail = p.sick.Message
			out[i].Isolation = p.sick.Isolation
		}
	}
	return out
}

// close stops the filler, waits for a start in flight to end, and kills every idle
// process and the one that start made; later takes return nil.
func (p *pool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.stopped
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	<-p.stopped
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, proc := range idle {
		wg.Add(1)
		go func() { defer wg.Done(); proc.Kill() }()
	}
	wg.Wait()
}
