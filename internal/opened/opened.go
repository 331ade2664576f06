// Package opened holds what a storage plugin opens at its first Configure (a database, a
// connection pool): opened once, refused with other settings while it runs, unavailable
// before and after Close.
package opened

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/limitgraph/limit/sdk/base"
)

// Settings are a backend's decoded configuration: comparable, so a second Configure with
// the same settings is recognised, and printable for the error when they differ.
type Settings interface {
	comparable
	String() string
}

// Slot holds the value of type E opened with settings S. Its zero value, with Name and
// the two errors set, is ready to use; it is safe for concurrent use.
type Slot[S Settings, E any] struct {
	// Name is the backend's name in diagnostics ("bolt").
	Name string
	// ErrNotConfigured and ErrClosed are what Get returns before the first successful
	// Configure and after Close.
	ErrNotConfigured, ErrClosed error

	mu     sync.Mutex // serializes Configure and Close
	closed atomic.Bool
	cur    atomic.Pointer[held[S, E]]
}

type held[S Settings, E any] struct {
	set S
	v   *E
}

// Configure opens the value with open, unless it is open already: with the same settings
// that is a no-op, with others an error, since what is open cannot be swapped under
// running requests. It returns the diagnostics to report (open's among them).
func (s *Slot[S, E]) Configure(set S, open func() (*E, base.Diagnostics)) base.Diagnostics {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return base.Diagnostics{base.Errorf(nil, "%s storage is closed; start a new plugin process", s.Name)}
	}
	if h := s.cur.Load(); h != nil {
		if h.set == set {
			return nil
		}
		return base.Diagnostics{{
			Severity: base.SeverityError,
			Summary:  s.Name + " storage is already configured with different settings",
			Detail:   fmt.Sprintf("It runs with %s; restart the plugin to apply %s.", h.set, set),
		}}
	}
	v, ds := open()
	if ds.HasErrors() {
		return ds
	}
	s.cur.Store(&held[S, E]{set: set, v: v})
	return ds
}

// Get returns the open value, or ErrNotConfigured or ErrClosed.
func (s *Slot[S, E]) Get() (*E, error) {
	if s.closed.Load() {
		return nil, s.ErrClosed
	}
	h := s.cur.Load()
	if h == nil {
		return nil, s.ErrNotConfigured
	}
	return h.v, nil
}

// Close marks the slot closed and closes the open value, if any, with close.
func (s *Slot[S, E]) Close(close func(*E) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed.Store(true)
	h := s.cur.Swap(nil)
	if h == nil {
		return nil
	}
	return close(h.v)
}
