package governance

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/limitgraph/limit/sdk/storage"
)

// Stats counts a session's governance events.
type Stats struct {
	Flags         int            `json:"flags"`
	ByFlag        map[string]int `json:"by_flag"`
	BySeverity    map[string]int `json:"by_severity"`
	Quarantined   int            `json:"quarantined"`
	MergesAllowed int            `json:"merges_allowed"`
	MergesRefused int            `json:"merges_refused"`
	// MergesWithdrawn counts merged traces taken out of the shared record by a later flag.
	MergesWithdrawn   int `json:"merges_withdrawn"`
	ExecutionsBlocked int `json:"executions_blocked"`
}

// NewStats returns empty stats.
func NewStats() Stats {
	return Stats{ByFlag: map[string]int{}, BySeverity: map[string]int{}}
}

// Add adds o to s.
func (s *Stats) Add(o Stats) {
	if s.ByFlag == nil {
		s.ByFlag = map[string]int{}
	}
	if s.BySeverity == nil {
		s.BySeverity = map[string]int{}
	}
	s.Flags += o.Flags
	for k, v := range o.ByFlag {
		s.ByFlag[k] += v
	}
	for k, v := range o.BySeverity {
		s.BySeverity[k] += v
	}
	s.Quarantined += o.Quarantined
	s.MergesAllowed += o.MergesAllowed
	s.MergesRefused += o.MergesRefused
	s.MergesWithdrawn += o.MergesWithdrawn
	s.ExecutionsBlocked += o.ExecutionsBlocked
}

// Delta is one change to a session's stats.
type Delta struct {
	Flags            []Flag
	Quarantined      bool
	MergeAllowed     bool
	MergeRefused     bool
	MergeWithdrawn   bool
	ExecutionBlocked bool
}

// Empty reports whether d changes nothing, so recording it needs no write.
func (d Delta) Empty() bool {
	return len(d.Flags) == 0 && !d.Quarantined && !d.MergeAllowed && !d.MergeRefused && !d.MergeWithdrawn && !d.ExecutionBlocked
}

func (d Delta) stats() Stats {
	s := NewStats()
	for _, f := range d.Flags {
		s.Flags++
		s.ByFlag[f.Flag]++
		s.BySeverity[strconv.Itoa(f.Severity)]++
	}
	if d.Quarantined {
		s.Quarantined++
	}
	if d.MergeAllowed {
		s.MergesAllowed++
	}
	if d.MergeRefused {
		s.MergesRefused++
	}
	if d.MergeWithdrawn {
		s.MergesWithdrawn++
	}
	if d.ExecutionBlocked {
		s.ExecutionsBlocked++
	}
	return s
}

var statsKey = []byte("gov/stats")

// StatsStore keeps per-session stats in each session's namespace, updated with
// compare-and-swap so concurrent updates (and several hosts) never lose a count.
type StatsStore struct {
	Store storage.Storage
	// Namespace maps a session id to its storage namespace.
	Namespace func(sessionID string) string
}

// Record applies d to the session's stats; an empty delta costs nothing.
func (st *StatsStore) Record(ctx context.Context, sessionID string, d Delta) error {
	if d.Empty() {
		return nil
	}
	ns := st.Namespace(sessionID)
	for attempt := 0; attempt < 100; attempt++ {
		cur, ok, err := st.Store.Get(ctx, ns, statsKey)
		if err != nil {
			return fmt.Errorf("governance stats: %w", err)
		}
		s := NewStats()
		if ok {
			if err := json.Unmarshal(cur, &s); err != nil {
				return fmt.Errorf("governance stats of session %s: corrupt record: %w", sessionID, err)
			}
		}
		s.Add(d.stats())
		next, err := json.Marshal(s)
		if err != nil {
			return err
		}
		res, err := st.Store.CompareAndSwap(ctx, storage.CASRequest{
			Namespace: ns, Key: statsKey, ExpectPresent: ok, Expected: cur, Value: next,
		})
		if err != nil {
			return fmt.Errorf("governance stats: %w", err)
		}
		if res.Swapped {
			return nil
		}
	}
	return fmt.Errorf("governance stats of session %s: too much contention", sessionID)
}

// Get returns the session's stats.
func (st *StatsStore) Get(ctx context.Context, sessionID string) (Stats, error) {
	s := NewStats()
	b, ok, err := st.Store.Get(ctx, st.Namespace(sessionID), statsKey)
	if err != nil {
		return s, fmt.Errorf("governance stats: %w", err)
	}
	if ok {
		if err := json.Unmarshal(b, &s); err != nil {
			return s, fmt.Errorf("governance stats of session %s: corrupt record: %w", sessionID, err)
		}
	}
	return s, nil
}
