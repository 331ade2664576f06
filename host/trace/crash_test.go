package trace

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

var errCrashed = errors.New("simulated crash")

// crashing wraps a storage and "crashes" the host at its n-th write: that write fails (after
// being applied, if applied is set, as when the process dies before the reply arrives), and
// so does every call after it, as if the process were gone. The storage underneath keeps
// what was written, as a durable backend does.
type crashing struct {
	storage.Storage
	mu      sync.Mutex
	writes  int
	n       int
	applied bool
	crashed bool
}

func (c *crashing) write(apply func() error) error {
	c.mu.Lock()
	if c.crashed {
		c.mu.Unlock()
		return errCrashed
	}
	c.writes++
	if c.writes == c.n {
		c.crashed = true
		c.mu.Unlock()
		if c.applied {
			_ = apply()
		}
		return errCrashed
	}
	c.mu.Unlock()
	return apply()
}

func (c *crashing) alive() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashed {
		return errCrashed
	}
	return nil
}

func (c *crashing) Get(ctx context.Context, ns string, key []byte) ([]byte, bool, error) {
	if err := c.alive(); err != nil {
		return nil, false, err
	}
	return c.Storage.Get(ctx, ns, key)
}

func (c *crashing) Scan(ctx context.Context, req storage.ScanRequest) (storage.ScanResult, error) {
	if err := c.alive(); err != nil {
		return storage.ScanResult{}, err
	}
	return c.Storage.Scan(ctx, req)
}

func (c *crashing) Put(ctx context.Context, ns string, key, value []byte) error {
	return c.write(func() error { return c.Storage.Put(ctx, ns, key, value) })
}

func (c *crashing) Delete(ctx context.Context, ns string, key []byte) (bool, error) {
	var ok bool
	err := c.write(func() (err error) { ok, err = c.Storage.Delete(ctx, ns, key); return err })
	return ok, err
}

func (c *crashing) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	return c.write(func() error { return c.Storage.Batch(ctx, ns, ops) })
}

func (c *crashing) CompareAndSwap(ctx context.Context, req storage.CASRequest) (storage.CASResult, error) {
	var res storage.CASResult
	err := c.write(func() (err error) { res, err = c.Storage.CompareAndSwap(ctx, req); return err })
	return res, err
}

// acked is what the workload was told succeeded.
type acked struct {
	session string
	// entries maps a trace id to the hashes of its entries by index, as far as acknowledged
	// ("" for an entry whose hash no acknowledgement told).
	entries map[string][]string
	status  map[string]Status
	flags   map[string]int
	merged  map[string]bool
	// extra are the Update.Extra puts attempted, acknowledged or not.
	extra []extraWrite
}

// extraWrite is an Update.Extra put made with the update that brings trace to length
// entries.
type extraWrite struct {
	key    []byte
	trace  string
	length int64
	acked  bool
}

// crashWorkloadWrites is how many storage writes crashWorkload makes when nothing fails:
// Create 1, three Appends 1 each, AddFlag 1, SetStatus 1, CopyToMerged 1, CreateWith 1,
// Apply 1, an unchanged SetStatus 0, WriteBundle 0; on a backend without batches over
// several namespaces, the two creates take 2 each.
func crashWorkloadWrites(multiNS bool) int {
	if multiNS {
		return 9
	}
	return 11
}

// singleNamespace hides a backend's storage.CapBatchNamespaces, so the store writes as it
// does to a backend without it.
type singleNamespace struct{ storage.Storage }

func (s singleNamespace) PluginInfo() base.Info {
	i := s.Storage.PluginInfo()
	i.Capabilities = slices.DeleteFunc(slices.Clone(i.Capabilities), func(c string) bool { return c == storage.CapBatchNamespaces })
	return i
}

// backends are the two ways a trace store writes: with batches over several namespaces
// (memstore has them) and without.
var backends = []struct {
	name    string
	multiNS bool
	wrap    func(storage.Storage) storage.Storage
}{
	{"batch-namespaces", true, func(s storage.Storage) storage.Storage { return s }},
	{"single-namespace", false, func(s storage.Storage) storage.Storage { return singleNamespace{s} }},
}

// crashWorkload runs a fixed sequence of operations until one fails, recording every
// acknowledged result.
func crashWorkload(ctx context.Context, s *Store, a *acked) error {
	entry := func(id string, i int64, hash string) {
		for int64(len(a.entries[id])) <= i {
			a.entries[id] = append(a.entries[id], "")
		}
		a.entries[id][i] = hash
	}
	ack := func(rec Record, appended ...Entry) {
		entry(rec.ID, rec.Length-1, rec.Head)
		for _, e := range appended {
			entry(rec.ID, e.Index, e.Hash)
		}
		a.status[rec.ID] = rec.Status
		a.flags[rec.ID] = len(rec.Flags)
	}
	t1, err := s.Create(ctx, a.session, TraceCustom, json.RawMessage(`{"prompt":"p"}`), "api")
	if err != nil {
		return err
	}
	ack(t1)
	for i := range 3 {
		e, err := s.Append(ctx, t1.ID, Entry{Kind: KindExecuted, Agent: "runner", Data: json.RawMessage(fmt.Sprint(i))})
		if err != nil {
			return err
		}
		entry(t1.ID, e.Index, e.Hash)
	}
	rec, err := s.AddFlag(ctx, t1.ID, Flag{Flag: governance.FlagUnverified, Severity: 3}, "gov")
	if err != nil {
		return err
	}
	ack(rec)
	if rec, err = s.SetStatus(ctx, t1.ID, StatusMerged, "gov", "ok"); err != nil {
		return err
	}
	ack(rec)
	if _, err := s.CopyToMerged(ctx, t1.ID); err != nil {
		return err
	}
	a.merged[t1.ID] = true
	// An execution: created with its result and a flag in one write, then quarantined with
	// a note in another, each with a key of the caller's riding along.
	t2, appended, err := s.CreateWith(ctx, a.session, TraceExecution, json.RawMessage(`{"code":"1/0"}`), "api", Update{
		Entries: []Entry{{Kind: KindExecuted, Agent: "runner", Data: json.RawMessage(`{"exit_code":1}`)}},
		Flags:   []Flag{{Flag: governance.FlagAnomaly, Severity: 4, AutoDetected: true}},
	})
	if err != nil {
		return err
	}
	ack(t2, appended...)
	a.extra = append(a.extra, extraWrite{key: []byte("exec/e1"), trace: t2.ID, length: t2.Length + 3})
	rec, appended, err = s.Apply(ctx, t2.ID, "gov", Update{
		Entries: []Entry{{Kind: "note", Data: json.RawMessage(`"failed"`)}},
		Flags:   []Flag{{Flag: governance.FlagHighRisk, Severity: 8}},
		Status:  StatusQuarantined, Reason: "severity 8",
		Extra: []storage.Op{{Kind: storage.OpPut, Key: []byte("exec/e1"), Value: []byte("result")}},
	})
	if err != nil {
		return err
	}
	ack(rec, appended...)
	a.extra[len(a.extra)-1].acked = true
	if rec, err = s.SetStatus(ctx, t2.ID, StatusQuarantined, "gov", "again"); err != nil {
		return err
	}
	ack(rec)
	_, err = s.WriteBundle(ctx, new(bytes.Buffer), BundleScope{SessionID: a.session})
	return err
}

// TestCrashBetweenWrites crashes the host at every write of a workload, with the write
// either lost or applied, then restarts it on the same storage and checks that nothing
// acknowledged is lost, every chain verifies, the store carries on, and an export verifies.
func TestCrashBetweenWrites(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) { testCrashBetweenWrites(t, be.multiNS, be.wrap) })
	}
}

func testCrashBetweenWrites(t *testing.T, multiNS bool, wrap func(storage.Storage) storage.Storage) {
	ctx := context.Background()
	runs := 0
	for _, applied := range []bool{false, true} {
		for n := 1; ; n++ {
			base := memstore.New()
			st := &crashing{Storage: wrap(base), n: n, applied: applied}
			a := &acked{session: NewID(), entries: map[string][]string{}, status: map[string]Status{}, flags: map[string]int{}, merged: map[string]bool{}}
			err := crashWorkload(ctx, newStore(t, st), a)
			if err == nil {
				if n-1 != crashWorkloadWrites(multiNS) {
					t.Fatalf("workload finished after %d writes, want %d", n-1, crashWorkloadWrites(multiNS))
				}
				break
			}
			if !errors.Is(err, errCrashed) {
				t.Fatalf("crash at write %d: workload failed with %v, want the simulated crash", n, err)
			}
			runs++
			name := fmt.Sprintf("crash at write %d (applied %v)", n, applied)
			checkAfterCrash(t, name, newStore(t, wrap(base)), a)
		}
	}
	t.Logf("%d crash points checked", runs)
}

func checkAfterCrash(t *testing.T, name string, s *Store, a *acked) {
	t.Helper()
	ctx := context.Background()
	for id, hashes := range a.entries {
		rec, err := s.Get(ctx, id)
		if err != nil {
			t.Fatalf("%s: acknowledged trace %s: %v", name, id, err)
		}
		chain, err := s.Chain(ctx, id)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(chain) < len(hashes) || rec.Length != int64(len(chain)) {
			t.Fatalf("%s: trace %s has %d entries (record %d), %d were acknowledged", name, id, len(chain), rec.Length, len(hashes))
		}
		for i, h := range hashes {
			if h != "" && chain[i].Hash != h {
				t.Fatalf("%s: acknowledged entry %d of %s changed", name, i, id)
			}
		}
		if len(rec.Flags) < a.flags[id] {
			t.Fatalf("%s: trace %s lost an acknowledged flag", name, id)
		}
	}
	for id := range a.merged {
		list, _, err := s.ListMerged(ctx, 0, "")
		if err != nil || len(list) != 1 || list[0].ID != id {
			t.Fatalf("%s: acknowledged merge of %s not listed: %v, %v", name, id, list, err)
		}
	}
	// An update's own keys are there exactly when its entries are.
	ns := SessionNamespace(DefaultTenant, a.session)
	for _, w := range a.extra {
		_, present, err := s.st.Get(ctx, ns, w.key)
		if err != nil {
			t.Fatal(err)
		}
		if w.acked && !present {
			t.Fatalf("%s: acknowledged extra key %s is missing", name, w.key)
		}
		chain, err := s.Chain(ctx, w.trace)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if written := int64(len(chain)) >= w.length; present != written {
			t.Fatalf("%s: extra key %s present %v, but trace %s has %d entries (the update makes %d)", name, w.key, present, w.trace, len(chain), w.length)
		}
	}
	// Every trace the session lists verifies and takes
	// another entry, after which its newest checkpoint covers it all.
	list, _, err := s.ListBySession(ctx, a.session, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range list {
		if v, err := s.Verify(ctx, rec.ID); err != nil || !v.Valid {
			t.Fatalf("%s: trace %s after restart: %+v, %v", name, rec.ID, v, err)
		}
		// (Apply, not Append: a merged trace's chain is final to Append.)
		if _, _, err := s.Apply(ctx, rec.ID, "test", Update{Entries: []Entry{{Kind: "after-restart"}}}); err != nil {
			t.Fatalf("%s: append after restart: %v", name, err)
		}
		if v, err := s.Verify(ctx, rec.ID); err != nil || !v.Valid || v.SignedLength != v.Length {
			t.Fatalf("%s: trace %s after an append: %+v, %v", name, rec.ID, v, err)
		}
	}
	// A create that crashed after its index entry reads as not found.
	res, err := s.st.Scan(ctx, storage.ScanRequest{Namespace: IndexNamespace(DefaultTenant), Prefix: recordPrefix})
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range res.Items {
		id := string(kv.Key[len(recordPrefix):])
		if _, ok := a.entries[id]; ok {
			continue
		}
		listed := false
		for _, r := range list {
			listed = listed || r.ID == id
		}
		if _, err := s.Get(ctx, id); !listed && !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: unacknowledged, unlisted trace %s: Get = %v, want ErrNotFound", name, id, err)
		}
	}
	var buf bytes.Buffer
	if _, err := s.WriteBundle(ctx, &buf, BundleScope{SessionID: a.session}); err != nil {
		t.Fatalf("%s: export after restart: %v", name, err)
	}
	if _, err := VerifyBundle(&buf, VerifyOptions{TrustedKey: s.PublicKey()}); err != nil {
		t.Fatalf("%s: bundle after restart: %v", name, err)
	}
}
