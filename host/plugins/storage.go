package plugins

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/storage"
)

// RestartWait bounds how long a storage call waits for a crashed storage plugin to come
// back before it fails; the caller's context may cut it shorter. The wait starts when the
// call failed, not when it was made: a call the plugin itself gave up on after its own
// timeouts (postgres: statement_timeout plus connect_timeout, 15 s by default) must not
// leave the wait spent, or the plugin, alive and answering, would be reported lost.
const RestartWait = 15 * time.Second

// Storage is the host's handle on the supervised storage plugin. It implements
// storage.Storage: calls go to the current process, and an idempotent call that fails
// because the process died waits for the restart and is retried once. Compare-and-swap is
// not retried, since it may have been applied before the process died; the caller gets
// storage.ErrUnavailable and decides. A call whose request never reached the process
// (storage.ErrNotSent) was not applied, so it is retried whatever it is. A write refused
// for want of space takes the backend as down (Managed.BackendDown) until a write or a
// health answer succeeds again.
type Storage struct {
	m *Managed
	// wait is RestartWait, shorter in tests.
	wait time.Duration
	// took and failed are the calls' metrics (Collectors): how long each took (its
	// retries included), and those that failed, by kind of failure.
	took   *prometheus.HistogramVec
	failed *prometheus.CounterVec
}

// NewStorage wraps a managed storage plugin.
func NewStorage(m *Managed) *Storage {
	return &Storage{m: m, wait: RestartWait,
		took: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "limit_storage_call_duration_seconds", Help: "Time a call to the storage plugin took (its retries after a restart included), by operation.",
			Buckets: []float64{.0001, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 15, 30},
		}, []string{"op"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "limit_storage_call_errors_total", Help: "Calls to the storage plugin that failed, by operation and kind: unavailable (the plugin or its backend could not be reached), no_space, timeout, canceled (the caller went away), invalid, condition_failed (a conditional batch whose condition did not hold: another write came first), other.",
		}, []string{"op", "kind"}),
	}
}

// Collectors are the metrics of the calls made through s, for the host's /metrics.
func (s *Storage) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.took, s.failed}
}

// observe counts a call of op that began at start and ended with *err.
func (s *Storage) observe(op string, start time.Time, err *error) {
	s.took.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if *err != nil {
		s.failed.WithLabelValues(op, failureKind(*err)).Inc()
	}
}

// failureKind names the kind of a storage call's failure, for the metrics.
func failureKind(err error) string {
	switch {
	case errors.Is(err, storage.ErrNoSpace):
		return "no_space"
	case errors.Is(err, storage.ErrConditionFailed):
		return "condition_failed"
	case errors.Is(err, storage.ErrInvalid):
		return "invalid"
	case storage.IsUnavailable(err):
		return "unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "other"
}

// do runs f against the current process, retrying once after a restart when retry is set.
func (s *Storage) do(ctx context.Context, retry bool, f func(storage.Storage) error) error {
	wctx, cancel := context.WithTimeout(ctx, s.wait)
	p, err := s.m.Current(wctx)
	cancel()
	if err != nil {
		return err
	}
	err = f(p.Impl.(storage.Storage))
	if err == nil || !lost(ctx, err) {
		return err
	}
	// The wait for a restart begins now, however long the call took.
	wctx, cancel = context.WithTimeout(ctx, s.wait)
	defer cancel()
	if !retry && !errors.Is(err, storage.ErrNotSent) {
		s.m.Check()
		return err
	}
	// A request that never reached the process was not applied, so it may be made again
	// as often as it takes (bounded by RestartWait): under load the first retry can still
	// land on the dying process, whose death the supervisor has not seen yet.
	for attempt := 0; ; attempt++ {
		old := p
		var rerr error
		p, rerr = s.m.Recover(wctx, p)
		if rerr != nil {
			return fmt.Errorf("%w (and the plugin did not come back: %v)", err, rerr)
		}
		if p == old && !errors.Is(err, storage.ErrNotSent) {
			// The process is alive and answers: the failure was its backend's (a database
			// down or a statement timed out), which it reported itself; doing the call
			// again would only double the wait.
			return err
		}
		err = f(p.Impl.(storage.Storage))
		if err == nil || !errors.Is(err, storage.ErrNotSent) {
			return err
		}
		s.m.Check()
		select { // give the supervisor a moment to see a dying process
		case <-time.After(min(time.Duration(attempt+1)*10*time.Millisecond, maxNotSentBackoff)):
		case <-wctx.Done():
			return err
		}
	}
}

// maxNotSentBackoff bounds the pause between the retries of a call whose request did not
// reach the process; RestartWait bounds them all. (A count of 8 retries, 360 ms in all,
// once ran out in the crash audit under load, before the restarted plugin took the call.)
const maxNotSentBackoff = 100 * time.Millisecond

// lost reports whether err means the plugin went away under the call: unreachable, or
// cancelled although the caller did not cancel (the supervisor closed the connection of a
// process it found dead while the call was in flight).
func lost(ctx context.Context, err error) bool {
	return storage.IsUnavailable(err) || (errors.Is(err, context.Canceled) && ctx.Err() == nil)
}

// PluginInfo implements base.Plugin.
func (s *Storage) PluginInfo() base.Info {
	st := s.m.Status()
	return base.Info{Name: st.Name, Kind: st.Kind, Version: st.Version}
}

// BatchNamespaces tells whether the plugin takes batch ops in other namespaces than the
// batch's (storage.CapBatchNamespaces).
func (s *Storage) BatchNamespaces(ctx context.Context) (bool, error) {
	var ok bool
	err := s.do(ctx, true, func(st storage.Storage) error {
		var err error
		ok, err = storage.TakesBatchNamespaces(ctx, st)
		return err
	})
	return ok, err
}

// ConfigSchema implements base.Plugin; the host's handle has no schema of its own.
func (s *Storage) ConfigSchema() base.Schema { return base.Schema{} }

// Configure implements base.Plugin; the supervised process is configured at launch.
func (s *Storage) Configure(context.Context, base.ConfigureRequest) base.Diagnostics { return nil }

// Get implements storage.Storage.
func (s *Storage) Get(ctx context.Context, ns string, key []byte) (v []byte, ok bool, err error) {
	defer s.observe("get", time.Now(), &err)
	err = s.do(ctx, true, func(st storage.Storage) error {
		v, ok, err = st.Get(ctx, ns, key)
		return err
	})
	return v, ok, err
}

// Put implements storage.Storage.
func (s *Storage) Put(ctx context.Context, ns string, key, value []byte) (err error) {
	defer s.observe("put", time.Now(), &err)
	err = s.do(ctx, true, func(st storage.Storage) error { return st.Put(ctx, ns, key, value) })
	s.m.wrote(true, err)
	return err
}

// Delete implements storage.Storage.
func (s *Storage) Delete(ctx context.Context, ns string, key []byte) (existed bool, err error) {
	defer s.observe("delete", time.Now(), &err)
	err = s.do(ctx, true, func(st storage.Storage) error {
		existed, err = st.Delete(ctx, ns, key)
		return err
	})
	s.m.wrote(existed, err)
	return existed, err
}

// Scan implements storage.Storage.
func (s *Storage) Scan(ctx context.Context, req storage.ScanRequest) (res storage.ScanResult, err error) {
	defer s.observe("scan", time.Now(), &err)
	err = s.do(ctx, true, func(st storage.Storage) error {
		res, err = st.Scan(ctx, req)
		return err
	})
	return res, err
}

// Batch implements storage.Storage. A conditional batch (one with assertions) is not
// retried: it may have been applied before the plugin died, and its assertions would then
// fail on the retry.
func (s *Storage) Batch(ctx context.Context, ns string, ops []storage.Op) (err error) {
	defer s.observe("batch", time.Now(), &err)
	retry := true
	for _, op := range ops {
		if op.IsAssertion() {
			retry = false
			break
		}
	}
	err = s.do(ctx, retry, func(st storage.Storage) error { return st.Batch(ctx, ns, ops) })
	s.m.wrote(len(ops) > 0, err)
	return err
}

// CompareAndSwap implements storage.Storage.
func (s *Storage) CompareAndSwap(ctx context.Context, req storage.CASRequest) (res storage.CASResult, err error) {
	defer s.observe("compare_and_swap", time.Now(), &err)
	err = s.do(ctx, false, func(st storage.Storage) error {
		res, err = st.CompareAndSwap(ctx, req)
		return err
	})
	s.m.wrote(res.Swapped, err)
	return res, err
}

// Close implements storage.Storage; the supervisor owns the process.
func (s *Storage) Close() error { return nil }

var _ storage.Storage = (*Storage)(nil)

// Snapshot streams the plugin's point-in-time snapshot (storage.Snapshotter) to fn. It is
// not retried after a crash (fn has seen part of it): the caller starts again. A plugin
// that offers none: an error wrapping storage.ErrNoSnapshot.
func (s *Storage) Snapshot(ctx context.Context, fn func(ns string, key, value []byte) error) (err error) {
	defer s.observe("snapshot", time.Now(), &err)
	return s.do(ctx, false, func(st storage.Storage) error {
		sn, ok := st.(storage.Snapshotter)
		if !ok {
			return fmt.Errorf("storage snapshot: %w", storage.ErrNoSnapshot)
		}
		return sn.Snapshot(ctx, fn)
	})
}
