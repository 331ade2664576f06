package crashtest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/limitgraph/limit/sdk/storage"
)

// Acknowledgement lines the writer prints, one per line, fields separated by spaces. A
// line is printed after the plugin returned the write (or, for intent-del, before the
// delete is sent), so a line cut short by a kill is ignored.
const (
	ackPut       = "put"        // put KEY: a lone put of a new key
	ackBatch     = "batch"      // batch KEY,KEY,... [VICTIM]: puts of new keys and maybe one delete
	ackIntentDel = "intent-del" // intent-del KEY: a delete of KEY is about to be sent
	ackDel       = "del"        // del KEY: KEY was deleted
	ackVersion   = "ver"        // ver KEY N: counter KEY holds version N (by put or compare-and-swap)
)

// roundLedger is what one round of writes acknowledged.
type roundLedger struct {
	// Exist holds keys whose put was acknowledged and that were not deleted since.
	Exist map[string]bool `json:"exist"`
	// Deleted holds keys whose delete was acknowledged.
	Deleted map[string]bool `json:"deleted"`
	// Intent holds keys whose delete was sent but not acknowledged: either state is fine.
	Intent map[string]bool `json:"intent"`
	// MinVersion holds the highest acknowledged version of each counter key.
	MinVersion map[string]uint32 `json:"min_version"`
	// Acks counts the round's acknowledged writes.
	Acks int `json:"acks"`
}

func newRoundLedger() *roundLedger {
	return &roundLedger{Exist: map[string]bool{}, Deleted: map[string]bool{}, Intent: map[string]bool{}, MinVersion: map[string]uint32{}}
}

// Ledger is every acknowledgement of a run, by round.
type Ledger struct {
	Rounds map[int]*roundLedger `json:"rounds"`
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return &Ledger{Rounds: map[int]*roundLedger{}} }

// round returns round r's ledger, creating it.
func (l *Ledger) round(r int) *roundLedger {
	rl := l.Rounds[r]
	if rl == nil {
		rl = newRoundLedger()
		l.Rounds[r] = rl
	}
	return rl
}

// Acks returns the number of acknowledged writes over all rounds.
func (l *Ledger) Acks() int {
	n := 0
	for _, rl := range l.Rounds {
		n += rl.Acks
	}
	return n
}

// Apply records one acknowledgement line of round r. Lines other than acknowledgements
// are ignored; a malformed acknowledgement is an error.
func (l *Ledger) Apply(r int, line string) error {
	f := strings.Fields(line)
	if len(f) == 0 {
		return nil
	}
	rl := l.round(r)
	bad := func() error { return fmt.Errorf("malformed acknowledgement %q", line) }
	switch f[0] {
	case ackPut:
		if len(f) != 2 {
			return bad()
		}
		rl.Exist[f[1]] = true
	case ackBatch:
		if len(f) != 2 && len(f) != 3 {
			return bad()
		}
		for k := range strings.SplitSeq(f[1], ",") {
			rl.Exist[k] = true
		}
		if len(f) == 3 {
			delete(rl.Exist, f[2])
			rl.Deleted[f[2]] = true
		}
	case ackIntentDel:
		if len(f) != 2 {
			return bad()
		}
		rl.Intent[f[1]] = true
		return nil // not an acknowledgement
	case ackDel:
		if len(f) != 2 {
			return bad()
		}
		delete(rl.Exist, f[1])
		delete(rl.Intent, f[1])
		rl.Deleted[f[1]] = true
	case ackVersion:
		if len(f) != 3 {
			return bad()
		}
		v, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			return bad()
		}
		if uint32(v) > rl.MinVersion[f[1]] {
			rl.MinVersion[f[1]] = uint32(v)
		}
	default:
		return nil
	}
	rl.Acks++
	return nil
}

// roundPrefix is the prefix of every key round r writes.
func roundPrefix(r int) string { return fmt.Sprintf("r%05d/", r) }

// roundOf returns the round of a key, or -1.
func roundOf(key string) int {
	if len(key) < 7 || key[0] != 'r' || key[6] != '/' {
		return -1
	}
	n, err := strconv.Atoi(key[1:6])
	if err != nil {
		return -1
	}
	return n
}

// Check is the outcome of a verification.
type Check struct {
	// Items is how many keys were read; OtherItems how many of them were in
	// OtherNamespace.
	Items, OtherItems int
	// Bytes is the size of the keys and values read.
	Bytes int64
	// Unacked counts keys found whose write was never acknowledged: in flight at a kill,
	// they landed, whole.
	Unacked int
	// Violations lists every broken promise; empty means the check passed.
	Violations []string
}

// maxViolations bounds the violations a check lists.
const maxViolations = 20

func (c *Check) violate(format string, args ...any) {
	if len(c.Violations) < maxViolations {
		c.Violations = append(c.Violations, fmt.Sprintf(format, args...))
	} else if len(c.Violations) == maxViolations {
		c.Violations = append(c.Violations, "... more violations left out")
	}
}

// Verify reads the keys of the given rounds (every round when rounds is nil) from ns and
// checks them against the ledger: every acknowledged write is there and intact, every
// acknowledged delete stays done, no counter went back, every value is whole and at its
// own key, and every batch that is visible at all is visible whole.
//
// Batches may have put some of their keys in OtherNamespace(ns): both are read, and a
// batch is whole only if its keys in both are there.
func (l *Ledger) Verify(ctx context.Context, s storage.Storage, ns string, rounds []int) (Check, error) {
	var c Check
	items := map[string]record{}
	scan := func(prefix string) error {
		for _, n := range []string{ns, OtherNamespace(ns)} {
			if err := l.scanInto(ctx, s, n, prefix, n != ns, &c, items); err != nil {
				return err
			}
		}
		return nil
	}
	if rounds == nil {
		if err := scan(""); err != nil {
			return c, err
		}
		for r := range l.Rounds {
			rounds = append(rounds, r)
		}
	} else {
		for _, r := range rounds {
			if err := scan(roundPrefix(r)); err != nil {
				return c, err
			}
		}
	}
	return l.check(c, items, rounds), nil
}

// OtherNamespace is the second namespace of a crash test's batches.
func OtherNamespace(ns string) string { return ns + "-other" }

// scanInto reads the keys with prefix in ns into items.
func (l *Ledger) scanInto(ctx context.Context, s storage.Storage, ns, prefix string, other bool, c *Check, items map[string]record) error {
	req := storage.ScanRequest{Namespace: ns, Prefix: []byte(prefix), Limit: storage.MaxScanLimit}
	for {
		res, err := s.Scan(ctx, req)
		if err != nil {
			return fmt.Errorf("scan %q prefix %q: %w", ns, prefix, err)
		}
		for _, kv := range res.Items {
			c.Items++
			if other {
				c.OtherItems++
			}
			c.Bytes += int64(len(kv.Key) + len(kv.Value))
			key := string(kv.Key)
			rec, err := decode(kv.Value)
			switch {
			case err != nil:
				c.violate("value at %s is damaged: %v", key, err)
			case rec.Key != key:
				c.violate("value at %s belongs to key %s", key, rec.Key)
			case items[key].Key != "":
				c.violate("key %s is in both namespaces", key)
			default:
				items[key] = rec
			}
		}
		if !res.More {
			return nil
		}
		req.StartAfter = res.Items[len(res.Items)-1].Key
	}
}

// check checks what was read (items, of the rounds) against the ledger.
func (l *Ledger) check(c Check, items map[string]record, rounds []int) Check {
	slices.Sort(rounds)

	// Batches: every member visible or none, and the victim gone when they are.
	type batchSeen struct {
		size, seen int
		victim     string
	}
	batches := map[string]*batchSeen{}
	victims := map[string]bool{} // deleted by a visible batch
	for _, rec := range items {
		if rec.Batch == "" {
			continue
		}
		b := batches[rec.Batch]
		if b == nil {
			b = &batchSeen{size: rec.BatchSize, victim: rec.Victim}
			batches[rec.Batch] = b
		}
		b.seen++
	}
	for id, b := range batches {
		if b.seen != b.size {
			c.violate("batch %s is visible in part: %d of its %d puts", id, b.seen, b.size)
		}
		if b.victim != "" {
			victims[b.victim] = true
			if _, ok := items[b.victim]; ok {
				c.violate("batch %s is visible but its delete of %s is not", id, b.victim)
			}
		}
	}

	expected := map[string]bool{}
	for _, r := range rounds {
		rl := l.Rounds[r]
		if rl == nil {
			continue
		}
		for k := range rl.Exist {
			expected[k] = true
			if _, ok := items[k]; !ok && !rl.Intent[k] && !victims[k] {
				c.violate("acknowledged write of %s is lost", k)
			}
		}
		for k := range rl.Deleted {
			if _, ok := items[k]; ok {
				c.violate("acknowledged delete of %s is undone: the key is back", k)
			}
		}
		for k, v := range rl.MinVersion {
			expected[k] = true
			rec, ok := items[k]
			switch {
			case !ok:
				c.violate("counter %s is lost; version %d was acknowledged", k, v)
			case rec.Version < v:
				c.violate("counter %s went back to version %d; version %d was acknowledged", k, rec.Version, v)
			}
		}
	}
	for k := range items {
		if !expected[k] && roundOf(k) >= 0 {
			c.Unacked++
		}
	}
	return c
}
