package main

import (
	"context"
	"errors"
	"os"
	"sync"

	"github.com/limitgraph/limit/sdk/storage"
)

// noSyncWarning is what the log at start, the health answers and -validate say of
// no_sync.
const noSyncWarning = "no_sync is set: writes are not synced to disk (UNSAFE: a machine crash or power loss can lose acknowledged writes)"

// probeBytes is the size of the file Health writes to tell whether a full disk has room
// again.
const probeBytes = 4096

// spaceState remembers the last write refused for a full disk, until a write succeeds or
// Health's probe finds room: meanwhile the backend reports itself unhealthy, and the host
// refuses executions before they run rather than lose their record.
type spaceState struct {
	mu  sync.Mutex
	err error
}

func (st *spaceState) get() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.err
}

func (st *spaceState) set(err error) {
	st.mu.Lock()
	st.err = err
	st.mu.Unlock()
}

// noteWrite records the outcome of a write: a full disk makes the store unhealthy, a
// write that succeeded healthy again. It returns err.
func (s *store) noteWrite(err error) error {
	switch {
	case err == nil:
		s.space.set(nil)
	case errors.Is(err, storage.ErrNoSpace):
		s.space.set(err)
	}
	return err
}

// put writes value durably (putFile), noting a full disk.
func (s *store) put(ns string, key, value []byte) error {
	return s.noteWrite(s.putFile(ns, key, value))
}

// batch writes a batch durably (batchFiles), noting a full disk.
func (s *store) batch(ctx context.Context, ns string, ops []storage.Op) error {
	return s.noteWrite(s.batchFiles(ctx, ns, ops))
}

// Health implements storage.HealthReporter: unhealthy while the store cannot be used (not
// configured, closed, a batch left half applied) and after a write failed for a full disk
// until a write succeeds or a probe file of probeBytes can be written; with no_sync, the
// answer says the writes are not durable.
func (s *store) Health(context.Context) storage.Health {
	if err := s.rlock(); err != nil {
		return storage.Health{Detail: err.Error()}
	}
	defer s.mu.RUnlock()
	h := storage.Health{OK: true, Metrics: map[string]float64{"no_sync": 0}}
	if full := s.space.get(); full != nil {
		name, err := s.writeTemp(make([]byte, probeBytes))
		if err == nil {
			_ = os.Remove(name)
			s.space.set(nil)
		} else {
			h.OK, h.Detail = false, full.Error()
		}
	}
	if s.noSync {
		h.Metrics["no_sync"] = 1
		if h.OK {
			h.Detail = noSyncWarning
		}
	}
	return h
}

var _ storage.HealthReporter = (*store)(nil)
