package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/sdktest"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// backends are the storages the retention tests run on: in memory, and the real
// storage-bolt plugin binary (over its client, as limitd uses it) on a database file.
var backends = []struct {
	name string
	open func(t *testing.T) storage.Storage
}{
	{"memory", func(*testing.T) storage.Storage { return memstore.New() }},
	{"bolt", func(t *testing.T) storage.Storage {
		bin := testbin.Plugin(t, "storage-bolt")
		dir := t.TempDir()
		cfg := fmt.Appendf(nil, `{"path": %q}`, filepath.Join(dir, "limit.db"))
		st, stop, err := sdktest.LaunchStorage(context.Background(), bin, nil, cfg, dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		return st
	}},
}

var retentionKey = func() *trace.Key {
	k, err := trace.GenerateKey()
	if err != nil {
		panic(err)
	}
	return k
}()

func newTraces(t *testing.T, st storage.Storage) *trace.Store {
	t.Helper()
	ts, err := trace.New(st, retentionKey, trace.Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// fixture is a host's storage with sessions in each state the sweep tells apart.
type fixture struct {
	st     storage.Storage
	m      *Manager
	traces *trace.Store
	// old was deleted first (the one due), recent after it, live never.
	old, recent, live *Session
	// plain is a trace of old, merged one of old merged into the shared record;
	// recentTrace and liveTrace are traces of the others.
	plain, merged, recentTrace, liveTrace trace.Record
}

func newFixture(t *testing.T, st storage.Storage) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{st: st, m: newManager(t, st), traces: newTraces(t, st)}
	mk := func(owner string) *Session {
		s, err := f.m.Create(ctx, CreateRequest{Name: "s", Owner: owner})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	trc := func(s *Session) trace.Record {
		rec, err := f.traces.Create(ctx, s.ID, trace.TraceCustom, []byte(`{"k":1}`), "test")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.traces.Append(ctx, rec.ID, trace.Entry{Kind: "review", Agent: "test", Data: []byte(`{"ok":true}`)}); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	f.old, f.recent, f.live = mk("alice"), mk("alice"), mk("alice")
	f.plain, f.merged = trc(f.old), trc(f.old)
	f.recentTrace, f.liveTrace = trc(f.recent), trc(f.live)
	if _, err := f.traces.SetStatus(ctx, f.merged.ID, trace.StatusMerged, "gov", "ok"); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.merged, err = f.traces.CopyToMerged(ctx, f.merged.ID); err != nil {
		t.Fatal(err)
	}
	// A key another package keeps in the session's namespace (a refinement point).
	if err := st.Put(ctx, trace.SessionNamespace(trace.DefaultTenant, f.old.ID), []byte("rd/point/1"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if f.old, err = f.m.Delete(ctx, f.old.ID); err != nil {
		t.Fatal(err)
	}
	if f.recent, err = f.m.Delete(ctx, f.recent.ID); err != nil {
		t.Fatal(err)
	}
	if !f.recent.DeletedAt.After(f.old.DeletedAt) {
		t.Fatalf("the second delete is not later than the first (%s, %s)", f.recent.DeletedAt, f.old.DeletedAt)
	}
	return f
}

// retention sweeps as if now were just retention past the old session's delete: it is
// due, the recent one not.
func (f *fixture) retention(traces TracePurger) *Retention {
	const after = 720 * time.Hour
	at := f.old.DeletedAt.Add(after)
	return &Retention{Sessions: f.m, Traces: traces, After: after, Logger: hclog.NewNullLogger(), Now: func() time.Time { return at }}
}

// keys lists the keys of ns with prefix.
func keys(t *testing.T, st storage.Storage, ns, prefix string) []string {
	t.Helper()
	res, err := st.Scan(context.Background(), storage.ScanRequest{Namespace: ns, Prefix: []byte(prefix), Limit: storage.MaxScanLimit, KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range res.Items {
		out = append(out, string(kv.Key))
	}
	return out
}

// checkPurged asserts that f.old is gone from storage, everything of it but its merged
// trace's copy in the shared record, which verifies; and that the other sessions and their
// traces are as they were.
func (f *fixture) checkPurged(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	idx := IndexNamespace(DefaultTenant)
	if _, err := f.m.Get(ctx, f.old.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of the purged session: %v, want ErrNotFound", err)
	}
	if _, err := newManager(t, f.st).Get(ctx, f.old.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of the purged session by another host: %v, want ErrNotFound", err)
	}
	if got := keys(t, f.st, trace.SessionNamespace(trace.DefaultTenant, f.old.ID), ""); len(got) != 0 {
		t.Errorf("the purged session's namespace holds %q", got)
	}
	for _, k := range []string{"trace/" + f.plain.ID, "trace/" + f.merged.ID, sessionPrefix + f.old.ID, string(ownerKey("alice", f.old.ID)), string(deletedKey(f.old.DeletedAt, f.old.ID))} {
		if _, ok, err := f.st.Get(ctx, idx, []byte(k)); err != nil || ok {
			t.Errorf("index key %s: present %v, %v; want it purged", k, ok, err)
		}
	}
	if got := keys(t, f.st, idx, deletedPrefix); len(got) != 1 {
		t.Errorf("deleted index = %q, want the recent session's entry alone", got)
	}
	list, _, err := f.m.List(ctx, 50, "", Filter{WithDeleted: true, Owner: "alice"})
	if err != nil || len(list) != 2 || list[0].ID != f.recent.ID || list[1].ID != f.live.ID {
		t.Errorf("List = %v, %v; want the recent and the live session", list, err)
	}
	// Through the store that wrote the traces (its caches know them) and through another
	// host's, which does not.
	for name, ts := range map[string]*trace.Store{"this host": f.traces, "another host": newTraces(t, f.st)} {
		if _, err := ts.Get(ctx, f.plain.ID); !errors.Is(err, trace.ErrNotFound) {
			t.Errorf("%s: Get of the purged trace: %v, want ErrNotFound", name, err)
		}
		if _, err := ts.Verify(ctx, f.plain.ID); !errors.Is(err, trace.ErrNotFound) {
			t.Errorf("%s: Verify of the purged trace: %v, want ErrNotFound", name, err)
		}
		if _, err := ts.Append(ctx, f.merged.ID, trace.Entry{Kind: "review", Agent: "test"}); !errors.Is(err, trace.ErrNotFound) {
			t.Errorf("%s: Append to the purged merged trace: %v, want ErrNotFound (its shared copy is not written)", name, err)
		}
		// The merged trace stays in the shared record, and verifies there.
		rec, err := ts.Get(ctx, f.merged.ID)
		if err != nil || rec.Status != trace.StatusMerged || rec.Length != f.merged.Length || rec.Head != f.merged.Head {
			t.Errorf("%s: Get of the merged trace: %+v, %v; want its shared copy of %d entries", name, rec, err, f.merged.Length)
		}
		v, err := ts.Verify(ctx, f.merged.ID)
		if err != nil || !v.Valid || v.Length != f.merged.Length || v.SignedLength != f.merged.Length {
			t.Errorf("%s: Verify of the merged trace: %+v, %v; want valid, %d entries signed", name, v, err, f.merged.Length)
		}
		if chain, err := ts.Chain(ctx, f.merged.ID); err != nil || int64(len(chain)) != f.merged.Length {
			t.Errorf("%s: Chain of the merged trace: %d entries, %v; want %d", name, len(chain), err, f.merged.Length)
		}
		var buf bytes.Buffer
		if _, err := ts.WriteBundle(ctx, &buf, trace.BundleScope{TraceIDs: []string{f.merged.ID}}); err != nil {
			t.Errorf("%s: export of the merged trace: %v", name, err)
		} else if sum, err := trace.VerifyBundle(&buf, trace.VerifyOptions{TrustedKey: retentionKey.PublicKey()}); err != nil || sum.Traces != 1 {
			t.Errorf("%s: the merged trace's bundle: %+v, %v", name, sum, err)
		}
		merged, _, err := ts.ListMerged(ctx, 0, "")
		if err != nil || len(merged) != 1 || merged[0].ID != f.merged.ID {
			t.Errorf("%s: ListMerged = %v, %v; want the merged trace", name, merged, err)
		}
	}
	f.checkOthers(t)
}

// checkOthers asserts that the recent and the live session and their traces are there.
func (f *fixture) checkOthers(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if s, err := f.m.Get(ctx, f.recent.ID); err != nil || s.State != StateDeleted {
		t.Errorf("the session deleted less than the retention ago: %+v, %v; want it kept", s, err)
	}
	if s, err := f.m.Active(ctx, f.live.ID); err != nil {
		t.Errorf("the live session: %+v, %v; want it active", s, err)
	}
	for _, rec := range []trace.Record{f.recentTrace, f.liveTrace} {
		if v, err := f.traces.Verify(ctx, rec.ID); err != nil || !v.Valid || v.Length != 2 {
			t.Errorf("trace %s of a kept session: %+v, %v; want it kept, valid", rec.ID, v, err)
		}
	}
	if _, ok, err := f.st.Get(ctx, IndexNamespace(DefaultTenant), deletedKey(f.recent.DeletedAt, f.recent.ID)); err != nil || !ok {
		t.Errorf("the recent session's deleted index entry: present %v, %v; want it kept", ok, err)
	}
}

// TestRetentionPurges: a sweep purges the session deleted longer than the retention ago
// (record, owner and deleted index entries, traces, their chains and index entries, the
// rest of its namespace), keeps its merged trace in the shared record, where it verifies,
// and leaves alone the session deleted less long ago and the live one. A second sweep, or
// another host's, finds nothing left to do.
func TestRetentionPurges(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, b.open(t))
			r := f.retention(f.traces)
			p, err := r.Sweep(ctx)
			if err != nil || p != (Purged{Sessions: 1, Traces: 2}) {
				t.Fatalf("Sweep = %+v, %v; want 1 session and its 2 traces", p, err)
			}
			f.checkPurged(t)
			if p, err := r.Sweep(ctx); err != nil || p != (Purged{}) {
				t.Errorf("second Sweep = %+v, %v; want nothing", p, err)
			}
			other := &Retention{Sessions: newManager(t, f.st), Traces: newTraces(t, f.st), After: r.After, Logger: r.Logger, Now: r.Now}
			if p, err := other.Sweep(ctx); err != nil || p != (Purged{}) {
				t.Errorf("another host's Sweep = %+v, %v; want nothing", p, err)
			}
		})
	}
}

// TestRetentionKeepsByDefault: without a retention, Run purges nothing.
func TestRetentionKeepsByDefault(t *testing.T) {
	f := newFixture(t, memstore.New())
	r := f.retention(f.traces)
	r.After = 0
	r.Now = func() time.Time { return f.recent.DeletedAt.Add(24 * 365 * time.Hour) }
	r.Run(context.Background()) // returns at once
	if _, err := f.m.Get(context.Background(), f.old.ID); err != nil {
		t.Fatalf("a deleted session without retention: %v, want it kept", err)
	}
}

// failingStore fails the batch numbered failAt (from 1) without applying it, as a host
// killed before that write would have left storage.
type failingStore struct {
	storage.Storage
	batches atomic.Int64
	failAt  int64
}

var errKilled = errors.New("killed")

func (s *failingStore) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	if s.batches.Add(1) == s.failAt {
		return errKilled
	}
	return s.Storage.Batch(ctx, ns, ops)
}

func (s *failingStore) Delete(ctx context.Context, ns string, key []byte) (bool, error) {
	if s.batches.Add(1) == s.failAt {
		return false, errKilled
	}
	return s.Storage.Delete(ctx, ns, key)
}

// TestRetentionResumes: a sweep cut short at any of its writes (a host killed there)
// leaves the session's record, still deleted, for the next sweep, which completes the
// purge; the shared record verifies at every point, and a session the first sweep did
// not reach is untouched.
func TestRetentionResumes(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			for cut := int64(1); ; cut++ {
				st := b.open(t)
				fs := &failingStore{Storage: st}
				f := newFixture(t, fs)
				fs.batches.Store(0)
				fs.failAt = cut
				r := f.retention(f.traces)
				_, err := r.Sweep(ctx)
				fs.failAt = 0
				if err == nil {
					if cut == 1 {
						t.Fatal("the sweep wrote nothing")
					}
					break // cut past the sweep's last write: it ran to its end
				}
				if !errors.Is(err, errKilled) {
					t.Fatalf("cut at write %d: %v", cut, err)
				}
				s, err := f.m.Get(ctx, f.old.ID)
				if err != nil || s.State != StateDeleted {
					t.Fatalf("cut at write %d: the session is %+v, %v; want its record kept until the end", cut, s, err)
				}
				if v, err := f.traces.Verify(ctx, f.merged.ID); err != nil || !v.Valid {
					t.Fatalf("cut at write %d: the merged trace: %+v, %v; want it valid", cut, v, err)
				}
				f.checkOthers(t)
				// The next sweep, on another host (no cache of this one's), completes it.
				next := &Retention{Sessions: newManager(t, st), Traces: newTraces(t, st), After: r.After, Logger: r.Logger, Now: r.Now}
				if p, err := next.Sweep(ctx); err != nil || p.Sessions != 1 {
					t.Fatalf("cut at write %d: the next sweep: %+v, %v; want the session purged", cut, p, err)
				}
				f.checkPurged(t)
			}
		})
	}
}

// TestRetentionIndexDeleted: a session an older limitd deleted (no deleted index entry) is
// purged once IndexDeleted, which Run calls first, has indexed it; a stray entry of a
// session whose record is gone is removed, and one of a live session neither purges it
// nor stays.
func TestRetentionIndexDeleted(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	f := newFixture(t, st)
	idx := IndexNamespace(DefaultTenant)
	if _, err := st.Delete(ctx, idx, deletedKey(f.old.DeletedAt, f.old.ID)); err != nil {
		t.Fatal(err)
	}
	gone, live := NewID(), f.live.ID
	for _, id := range []string{gone, live} {
		if err := st.Put(ctx, idx, deletedKey(f.old.DeletedAt.Add(-time.Hour), id), []byte{}); err != nil {
			t.Fatal(err)
		}
	}
	r := f.retention(f.traces)
	if p, err := r.Sweep(ctx); err != nil || p != (Purged{}) {
		t.Fatalf("Sweep before indexing = %+v, %v; want nothing purged", p, err)
	}
	if _, err := f.m.Get(ctx, f.old.ID); err != nil {
		t.Fatalf("an unindexed deleted session: %v, want it kept until indexed", err)
	}
	if n, err := f.m.IndexDeleted(ctx); err != nil || n != 2 {
		t.Fatalf("IndexDeleted = %d, %v; want the 2 deleted sessions", n, err)
	}
	if p, err := r.Sweep(ctx); err != nil || p != (Purged{Sessions: 1, Traces: 2}) {
		t.Fatalf("Sweep = %+v, %v; want the session purged", p, err)
	}
	f.checkPurged(t)
}
