package plugins

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
	"github.com/limitgraph/limit/sdk/storage"
)

// Backoff bounds for restarting a crashed plugin.
const (
	MinBackoff = 100 * time.Millisecond
	MaxBackoff = 30 * time.Second
	// stableAfter is how long a process must run before its crash no longer counts
	// towards the backoff.
	stableAfter = time.Minute
)

// Managed is a long-lived plugin (storage, governance rule) that is health-checked and
// restarted with exponential backoff when it crashes.
type Managed struct {
	spec     Spec
	logger   hclog.Logger
	interval time.Duration

	mu    sync.Mutex
	proc  *Process
	ready chan struct{} // closed while proc is usable; replaced when it is lost
	// down is closed while the plugin is lost and its last restart attempt failed (its
	// binary gone, a plugin that no longer starts): callers are told at once that it is
	// unavailable rather than wait out their deadline for an attempt that will likely fail
	// too. It is replaced once a restart succeeds.
	down      chan struct{}
	restarts  int
	failures  int // consecutive failed or short-lived starts, for the backoff
	lastErr   error
	lastErrAt time.Time // when lastErr happened
	closed    bool
	// stopping is set once the host shuts down (Stopping): a process lost from then on is
	// not restarted.
	stopping bool
	// backend is the last answer of a backend that reports its own state (a storage
	// plugin's Health), nil until one came.
	backend *storage.Health
	// noSpace is the last write the storage refused for want of space (storage.ErrNoSpace),
	// "" once a write succeeded again or a health answer asked for after it was OK: the
	// backend is down meanwhile, whatever its last health answer said (it may have come
	// before the disk filled, or probe with a write smaller than those refused).
	// noSpaceGen counts the refusals, so that only a health answer asked for after the
	// last one clears it.
	noSpace    string
	noSpaceGen uint64

	nudge chan struct{}
	stop  chan struct{}
	done  chan struct{}
}

// StartManaged launches and configures a plugin, then supervises it until Close.
// The first start must succeed: a plugin that cannot start at boot is a configuration
// problem to report, not to retry.
func StartManaged(ctx context.Context, spec Spec, logger hclog.Logger, interval time.Duration) (*Managed, error) {
	if interval <= 0 {
		interval = time.Second
	}
	m := &Managed{
		spec: spec, logger: logger, interval: interval,
		ready: make(chan struct{}), down: make(chan struct{}), nudge: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	p, err := m.launch(ctx)
	if err != nil {
		return nil, err
	}
	m.proc = p
	close(m.ready)
	m.checkBackend(p)
	go m.watch()
	return m, nil
}

func (m *Managed) launch(ctx context.Context) (*Process, error) {
	p, err := Launch(ctx, m.spec, m.logger)
	if err != nil {
		return nil, err
	}
	if err := p.Configure(ctx, false); err != nil {
		p.Kill()
		return nil, err
	}
	return p, nil
}

// Spec returns the plugin's spec.
func (m *Managed) Spec() Spec { return m.spec }

// ErrUnavailable marks a call that found its supervised plugin unusable: lost and being
// restarted, its restarts failing, or shut down. The error's text names the plugin but
// not the cause (a start error can name the binary's path), which goes to the log and to
// Status; for a storage plugin it is a storage.ErrUnavailable too.
var ErrUnavailable = errors.New("plugin unavailable")

// UnavailableError is the error a call gets when its supervised plugin is unusable.
type UnavailableError struct {
	// ID is the plugin's namespaced id, e.g. "storage.bolt".
	ID string
	// Reason says, for the caller, why the plugin cannot be used.
	Reason string
	kind   string
	cause  error // a context's error, or nil
}

func (e *UnavailableError) Error() string { return e.ID + ": plugin unavailable: " + e.Reason }

// Is reports ErrUnavailable, and storage.ErrUnavailable for a storage plugin, so that the
// API answers 503 with Retry-After.
func (e *UnavailableError) Is(target error) bool {
	return target == ErrUnavailable || (target == storage.ErrUnavailable && e.kind == base.KindStorage)
}

// Unwrap returns the context error that ended the wait, if that is what did.
func (e *UnavailableError) Unwrap() error { return e.cause }

func (m *Managed) unavailable(reason string, cause error) error {
	return &UnavailableError{ID: m.spec.ID(), Reason: reason, kind: m.spec.Kind, cause: cause}
}

// Current returns the running process, waiting (bounded by ctx) while it is restarted.
// While the plugin's last restart attempt failed it returns an UnavailableError at once.
func (m *Managed) Current(ctx context.Context) (*Process, error) {
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, m.unavailable("it is shut down", nil)
		}
		ready, down, p := m.ready, m.down, m.proc
		m.mu.Unlock()
		// Close does not make ready: a caller waiting for a restart hears of it through
		// stop, and is told the plugin is shut down rather than wait out its deadline.
		select {
		case <-m.stop:
			continue
		case <-ready:
			if p != nil && !p.Exited() {
				return p, nil
			}
			m.Check()
			// The watcher will replace ready; give it a moment.
			select {
			case <-time.After(10 * time.Millisecond):
			case <-ctx.Done():
				return nil, m.unavailable("it was lost and is being restarted", ctx.Err())
			}
		case <-down:
			return nil, m.unavailable("it was lost and cannot be restarted yet (the log and GET /v1/health say why); it is retried in the background", nil)
		case <-ctx.Done():
			return nil, m.unavailable("it was lost and is being restarted", ctx.Err())
		}
	}
}

// Recover is called after a call to old failed because the plugin could not be reached.
// It returns old again if it answers a health ping (the failure was transient), else
// waits for the watcher to replace it and returns the new process.
func (m *Managed) Recover(ctx context.Context, old *Process) (*Process, error) {
	for {
		m.Check()
		cur, err := m.Current(ctx)
		if err != nil {
			return nil, err
		}
		if cur != old {
			return cur, nil
		}
		if m.probe(old) == nil {
			return old, nil
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			// The process is still the one that failed, and it does not answer a health
			// ping: no restart is underway yet, so none is claimed.
			return nil, m.unavailable("it does not answer (its health ping fails) and was not replaced within the wait", ctx.Err())
		}
	}
}

// Check asks the watcher to check the process now instead of at its next tick, e.g.
// after a call failed because the plugin could not be reached.
func (m *Managed) Check() {
	select {
	case m.nudge <- struct{}{}:
	default:
	}
}

// Status describes the plugin for health reports.
func (m *Managed) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := Status{Name: m.spec.Name, Kind: m.spec.Kind, Restarts: m.restarts}
	if m.lastErr != nil {
		st.LastError = m.lastErr.Error()
		st.LastErrorAt = m.lastErrAt.UTC().Format(time.RFC3339)
	}
	if m.proc != nil {
		st.Version = m.proc.Info.Version
		st.PID = m.proc.PID
		st.Healthy = !m.proc.Exited()
		st.Transport = m.proc.Transport()
		if b := m.backend; b != nil {
			st.Healthy = st.Healthy && b.OK
			st.Detail, st.Metrics = b.Detail, b.Metrics
		}
		if m.noSpace != "" && (m.backend == nil || m.backend.OK) {
			st.Healthy, st.Detail = false, m.noSpace
		}
	}
	return st
}

// ReadyWait bounds how long Unavailable waits for a plugin whose process was lost to be
// restarted: a crashed process's restart takes a fraction of a second, and a call made
// meanwhile need not be refused.
var ReadyWait = 2 * time.Second

// Unavailable returns why the plugin cannot take calls now, or "" when it can: its process
// lost and not back within ReadyWait (at once while its restarts fail, say its binary is
// gone, or once it is shut down or the host stops), or its backend down (BackendDown).
func (m *Managed) Unavailable() string {
	ctx, cancel := context.WithTimeout(context.Background(), ReadyWait)
	defer cancel()
	if _, err := m.Current(ctx); err != nil {
		return err.Error()
	}
	return m.BackendDown()
}

// RestartCount counts the processes of a plugin replaced for one reason since the host
// started, for the metrics; it only grows.
type RestartCount struct {
	// Kind and Name are the plugin's kind (KindPool for a runner's pre-started processes)
	// and configured name.
	Kind, Name string
	// Reason is why its processes were replaced (RestartCrash…).
	Reason string
	Count  uint64
}

// Reasons a plugin's process was replaced.
const (
	// RestartCrash: the process died or stopped answering (a supervised plugin restarted,
	// a runner process found dead).
	RestartCrash = "crash"
	// RestartFailed: a runner process failed an execution in a way that leaves its state
	// unknown (an error, an execution it did not end in time) and was stopped.
	RestartFailed = "failed"
	// RestartIdle: a runner process ran nothing for its idle_timeout.
	RestartIdle = "idle"
	// RestartMaxProcesses: a runner process was stopped to make room under max_processes.
	RestartMaxProcesses = "max_processes"
)

// RestartCounts counts the supervised plugin's restarts after its process was lost
// (reason RestartCrash): Status's Restarts, as a RestartCount.
func (m *Managed) RestartCounts() []RestartCount {
	m.mu.Lock()
	defer m.mu.Unlock()
	return []RestartCount{{Kind: m.spec.Kind, Name: m.spec.Name, Reason: RestartCrash, Count: uint64(m.restarts)}}
}

// BackendDown returns the reason the plugin's backend last reported itself unhealthy
// (a database unreachable, a full disk), or why it is taken as down (a write it refused
// for want of space since its last good health answer or write), or "" when neither.
func (m *Managed) BackendDown() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b := m.backend; b != nil && !b.OK {
		if b.Detail == "" {
			return "the storage backend reports itself unhealthy"
		}
		return b.Detail
	}
	return m.noSpace
}

// wrote is told of the outcome of a call that writes: a refusal for want of space
// (storage.ErrNoSpace) takes the backend as down at once, without waiting for its next
// health answer, so that executions are refused before they run rather than run with no
// room for their record; a write that went through (written is true) takes it as up again.
func (m *Managed) wrote(written bool, err error) {
	switch {
	case errors.Is(err, storage.ErrNoSpace):
		m.mu.Lock()
		was := m.noSpace
		m.noSpace = "a write was refused for want of space: " + err.Error()
		m.noSpaceGen++
		m.mu.Unlock()
		if was == "" {
			m.logger.Error("storage refused a write for want of space; executions are refused until a write or its health check succeeds",
				"plugin", m.spec.ID(), "error", err)
		}
	case err == nil && written:
		m.clearNoSpace(0, false)
	}
}

// clearNoSpace ends the no-space state, unless onlyGen is set and a write was refused
// for want of space after gen (the health answer that clears it was asked for before).
func (m *Managed) clearNoSpace(gen uint64, onlyGen bool) {
	m.mu.Lock()
	was := m.noSpace
	if was == "" || (onlyGen && m.noSpaceGen != gen) {
		m.mu.Unlock()
		return
	}
	m.noSpace = ""
	m.mu.Unlock()
	m.logger.Info("storage takes writes again", "plugin", m.spec.ID())
}

func (m *Managed) watch() {
	defer close(m.done)
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		case <-m.nudge:
		}
		m.mu.Lock()
		p := m.proc
		m.mu.Unlock()
		if p == nil {
			continue
		}
		err := m.probe(p)
		if err == nil {
			m.checkBackend(p)
			continue
		}
		m.mu.Lock()
		if m.stopping {
			// Expected: a service manager stopping the host may signal its plugins too.
			m.ready = make(chan struct{})
			m.proc = nil
			m.backend = nil
			select {
			case <-m.down:
			default:
				close(m.down)
			}
			m.mu.Unlock()
			m.logger.Info("plugin process ended while the host shuts down; not restarted", "plugin", m.spec.ID(), "pid", p.PID, "error", err)
			p.killLost()
			return
		}
		m.mu.Unlock()
		m.logger.Error("plugin lost, restarting", "plugin", m.spec.ID(), "pid", p.PID, "error", err)
		m.mu.Lock()
		m.ready = make(chan struct{})
		m.proc = nil
		m.backend = nil
		m.lastErr, m.lastErrAt = err, time.Now()
		if p.Uptime() < stableAfter {
			m.failures++
		} else {
			m.failures = 1
		}
		m.mu.Unlock()
		p.killLost()
		if !m.restart() {
			return
		}
	}
}

// backendReporter is a plugin client that can ask its backend for its state.
type backendReporter interface {
	Health(ctx context.Context) (storage.Health, error)
}

// checkBackend asks a backend that reports its state (a storage plugin's Health) for it,
// and logs when it changes between healthy and not.
func (m *Managed) checkBackend(p *Process) {
	r, ok := p.Impl.(backendReporter)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m.mu.Lock()
	gen := m.noSpaceGen
	m.mu.Unlock()
	h, err := r.Health(ctx)
	if err != nil {
		h = storage.Health{Detail: "health call failed: " + err.Error()}
	}
	m.mu.Lock()
	was := m.backend
	m.backend = &h
	m.mu.Unlock()
	if h.OK {
		m.clearNoSpace(gen, true)
	}
	switch {
	case !h.OK && (was == nil || was.OK || was.Detail != h.Detail):
		m.logger.Error("plugin reports its backend unhealthy", "plugin", m.spec.ID(), "detail", h.Detail)
	case h.OK && was != nil && !was.OK:
		m.logger.Info("plugin reports its backend healthy again", "plugin", m.spec.ID())
	}
}

// probe tells why p is not usable, or nil.
func (m *Managed) probe(p *Process) error {
	if p.Exited() {
		return errors.New("plugin process exited")
	}
	if err := p.Ping(); err != nil {
		return fmt.Errorf("health ping: %w", err)
	}
	return nil
}

// restart relaunches the plugin with exponential backoff until it works or the plugin
// is closed; it reports false when closed.
func (m *Managed) restart() bool {
	for {
		m.mu.Lock()
		n := m.failures
		m.mu.Unlock()
		delay := backoff(n)
		select {
		case <-m.stop:
			return false
		case <-time.After(delay):
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-m.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		p, err := m.launch(ctx)
		cancel()
		m.mu.Lock()
		if err != nil {
			m.failures++
			m.lastErr, m.lastErrAt = err, time.Now()
			select {
			case <-m.down:
			default:
				close(m.down)
			}
			m.mu.Unlock()
			m.logger.Error("plugin restart failed", "plugin", m.spec.ID(), "error", err, "next_attempt_in", backoff(n+1))
			continue
		}
		if m.closed || m.stopping {
			m.mu.Unlock()
			p.Kill()
			return false
		}
		m.proc = p
		m.restarts++
		close(m.ready)
		select {
		case <-m.down:
			m.down = make(chan struct{})
		default:
		}
		m.mu.Unlock()
		m.logger.Info("plugin restarted", "plugin", m.spec.ID(), "pid", p.PID, "restarts", m.restarts)
		return true
	}
}

// backoff is the delay before the n-th consecutive restart attempt (n ≥ 1).
func backoff(n int) time.Duration {
	if n <= 1 {
		return MinBackoff
	}
	d := MinBackoff
	for i := 1; i < n && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// Stopping tells the supervisor the host is shutting down: the process goes on serving
// until Close, but its end is expected from now on (systemd, stopping limitd, signals every
// process of its unit): it is logged at INFO, not restarted, and callers are told at once
// that the plugin is unavailable. A restart under way is abandoned.
func (m *Managed) Stopping() {
	m.mu.Lock()
	m.stopping = true
	p := m.proc
	m.mu.Unlock()
	if p != nil {
		p.expectEnd()
	}
}

// Close stops supervising and kills the process.
func (m *Managed) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	p := m.proc
	m.proc = nil
	m.mu.Unlock()
	close(m.stop)
	<-m.done
	if p != nil {
		p.Kill()
	}
}

// Status is a plugin's state for health reports.
type Status struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Version  string `json:"version"`
	PID      int    `json:"pid"`
	Healthy  bool   `json:"healthy"`
	Restarts int    `json:"restarts"`
	Session  string `json:"session,omitempty"`
	// LastError is the plugin's latest failure (its process lost, a start that failed); it
	// stays after the plugin recovers, with LastErrorAt (RFC 3339) telling when it happened,
	// so a flapping plugin can be told from one that failed once long ago.
	LastError   string `json:"last_error,omitempty"`
	LastErrorAt string `json:"last_error_at,omitempty"`
	// Transport is what carries the frequent calls to a storage, runner or governance
	// process: "unix" (its fast path) or "grpc".
	Transport string `json:"transport,omitempty"`
	// Isolation is what a runner process reported enforcing for its session.
	Isolation []runner.IsolationFeature `json:"isolation,omitempty"`
	// Detail and Metrics are what a backend reports of its own state (a storage plugin's
	// Health): why it is not healthy though its process is up (a full disk), and figures
	// such as the bytes waiting in its write-ahead log.
	Detail  string             `json:"detail,omitempty"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
}
