package trace

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// countingWrites counts the storage calls that write, and those that read.
type countingWrites struct {
	storage.Storage
	mu            sync.Mutex
	writes, reads int
}

func (c *countingWrites) count() {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
}

func (c *countingWrites) countRead() {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
}

// take returns the writes counted since the last call.
func (c *countingWrites) take() int {
	n, _ := c.takeBoth()
	return n
}

// takeBoth returns the writes and reads counted since the last call.
func (c *countingWrites) takeBoth() (writes, reads int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	writes, reads = c.writes, c.reads
	c.writes, c.reads = 0, 0
	return writes, reads
}

func (c *countingWrites) Get(ctx context.Context, ns string, key []byte) ([]byte, bool, error) {
	c.countRead()
	return c.Storage.Get(ctx, ns, key)
}

func (c *countingWrites) Scan(ctx context.Context, req storage.ScanRequest) (storage.ScanResult, error) {
	c.countRead()
	return c.Storage.Scan(ctx, req)
}

func (c *countingWrites) Put(ctx context.Context, ns string, key, value []byte) error {
	c.count()
	return c.Storage.Put(ctx, ns, key, value)
}

func (c *countingWrites) Delete(ctx context.Context, ns string, key []byte) (bool, error) {
	c.count()
	return c.Storage.Delete(ctx, ns, key)
}

func (c *countingWrites) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	c.count()
	return c.Storage.Batch(ctx, ns, ops)
}

func (c *countingWrites) CompareAndSwap(ctx context.Context, req storage.CASRequest) (storage.CASResult, error) {
	c.count()
	return c.Storage.CompareAndSwap(ctx, req)
}

// TestWriteCounts checks how many storage writes (each one durable: an fsync on a real
// backend) every operation costs, and how many reads an update makes before its write
// (each a call across the plugin boundary).
func TestWriteCounts(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			creates := 2 // the index entry, then the trace
			if be.multiNS {
				creates = 1 // both in one batch
			}
			testWriteCounts(t, be.wrap(memstore.New()), creates)
		})
	}
}

func testWriteCounts(t *testing.T, backend storage.Storage, creates int) {
	ctx := context.Background()
	st := &countingWrites{Storage: backend}
	s := newStore(t, st)
	session := NewID()
	var id string
	three := Update{
		Entries: []Entry{{Kind: KindExecuted}, {Kind: "note"}, {Kind: "note"}},
		Flags:   []Flag{{Flag: governance.FlagAnomaly, Severity: 2}},
		Status:  StatusQuarantined, Reason: "r",
		Extra: []storage.Op{{Kind: storage.OpPut, Key: []byte("exec/x"), Value: []byte("1")}},
	}
	tests := []struct {
		name   string
		call   func() error
		writes int
		reads  int // -1: not checked
	}{
		{"Create", func() (err error) {
			rec, err := s.Create(ctx, session, TraceCustom, nil, "t")
			id = rec.ID
			return err
		}, creates, 0},
		{"Append", func() error { _, err := s.Append(ctx, id, Entry{Kind: "note"}); return err }, 1, 1},
		{"AddFlag", func() error {
			_, err := s.AddFlag(ctx, id, Flag{Flag: governance.FlagUnsafe, Severity: 3}, "g")
			return err
		}, 1, 1},
		{"SetStatus", func() error { _, err := s.SetStatus(ctx, id, StatusQuarantined, "g", "r"); return err }, 1, 1},
		{"SetStatus unchanged", func() error { _, err := s.SetStatus(ctx, id, StatusQuarantined, "g", "r"); return err }, 0, 2},
		{"Apply of three entries, a flag, a status and a key", func() error {
			_, _, err := s.Apply(ctx, id, "g", three)
			return err
		}, 1, 1},
		{"Apply of nothing", func() error { _, _, err := s.Apply(ctx, id, "g", Update{}); return err }, 0, 2},
		{"CreateWith", func() error {
			_, _, err := s.CreateWith(ctx, session, TraceExecution, nil, "t", three)
			return err
		}, creates, 0},
		{"Get", func() error { _, err := s.Get(ctx, id); return err }, 0, -1},
		{"Verify", func() error { _, err := s.Verify(ctx, id); return err }, 0, -1},
		{"WriteBundle", func() error {
			_, err := s.WriteBundle(ctx, new(bytes.Buffer), BundleScope{SessionID: session})
			return err
		}, 0, -1},
	}
	for _, tc := range tests {
		st.take()
		if err := tc.call(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		w, r := st.takeBoth()
		if w != tc.writes {
			t.Errorf("%s made %d storage writes, want %d", tc.name, w, tc.writes)
		}
		if tc.reads >= 0 && r != tc.reads {
			t.Errorf("%s made %d storage reads, want %d", tc.name, r, tc.reads)
		}
	}
}

// testApply applies updates of several parts and checks the record, the chain, the
// checkpoints, the caller's keys and the export.
func testApply(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	s := newStore(t, st)
	session := NewID()
	ns := SessionNamespace(DefaultTenant, session)
	if err := st.Put(ctx, ns, []byte("exec/old"), []byte("stale")); err != nil {
		t.Fatal(err)
	}
	rec, created, err := s.CreateWith(ctx, session, TraceExecution, json.RawMessage(`{"code":"print(1)"}`), "api", Update{
		Entries: []Entry{{Kind: KindExecuted, Agent: "runner.python", Data: json.RawMessage(`{"exit_code": 0}`)}},
		Flags:   []Flag{{Flag: governance.FlagUnverified, Severity: 2, RuleID: "r1", AutoDetected: true}},
		Status:  StatusActive, // already active: no entry
		Extra:   []storage.Op{{Kind: storage.OpPut, Key: []byte("exec/1"), Value: []byte("result")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Length != 3 || len(created) != 2 || created[0].Index != 1 || created[0].Agent != "runner.python" ||
		string(created[0].Data) != `{"exit_code":0}` || created[1].Kind != KindFlagged || created[1].Agent != "api" ||
		rec.Head != created[1].Hash || len(rec.Flags) != 1 || rec.Status != StatusActive || !rec.UpdatedAt.Equal(created[1].Timestamp) {
		t.Fatalf("CreateWith returned %+v and %+v", rec, created)
	}
	if got, err := s.Get(ctx, rec.ID); err != nil || !bytes.Equal(mustCanonical(t, got), mustCanonical(t, rec)) {
		t.Fatalf("Get = %+v, %v; want what CreateWith returned", got, err)
	}
	if v := rawGet(t, st, ns, []byte("exec/1")); string(v) != "result" {
		t.Fatalf("extra key holds %q", v)
	}

	rec, appended, err := s.Apply(ctx, rec.ID, "governance", Update{
		Entries: []Entry{{Kind: "note", Data: json.RawMessage(`[1, 2]`)}, {Kind: "note", Agent: "alice"}},
		Flags: []Flag{
			{Flag: governance.FlagHighRisk, Severity: 7, Reason: "x"},
			{Flag: governance.FlagMalicious, Severity: 9, Reason: "y"},
		},
		Status: StatusQuarantined, Reason: "severity 9",
		Extra: []storage.Op{
			{Kind: storage.OpPut, Key: []byte("exec/2"), Value: []byte("more")},
			{Kind: storage.OpDelete, Key: []byte("exec/old")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var kinds, agents []string
	for i, e := range appended {
		if e.Index != int64(3+i) {
			t.Fatalf("appended entry %d has index %d", i, e.Index)
		}
		kinds = append(kinds, e.Kind)
		agents = append(agents, e.Agent)
	}
	if want := []string{"note", "note", KindFlagged, KindFlagged, KindQuarantined}; !slices.Equal(kinds, want) {
		t.Fatalf("Apply appended %v, want %v", kinds, want)
	}
	if want := []string{"governance", "alice", "governance", "governance", "governance"}; !slices.Equal(agents, want) {
		t.Fatalf("entries by %v, want %v", agents, want)
	}
	if rec.Length != 8 || rec.Status != StatusQuarantined || len(rec.Flags) != 3 || rec.Head != appended[4].Hash {
		t.Fatalf("Apply returned %+v", rec)
	}
	if _, ok, _ := st.Get(ctx, ns, []byte("exec/old")); ok {
		t.Fatal("extra delete was not applied")
	}
	if v := rawGet(t, st, ns, []byte("exec/2")); string(v) != "more" {
		t.Fatalf("extra key holds %q", v)
	}
	// One checkpoint per write, for the length after it.
	if got := checkpointLengths(t, st, ns, rec.ID); !slices.Equal(got, []int64{3, 8}) {
		t.Fatalf("checkpoint lengths %v, want [3 8]", got)
	}
	if v, err := s.Verify(ctx, rec.ID); err != nil || !v.Valid || v.Length != 8 || v.SignedLength != 8 {
		t.Fatalf("Verify = %+v, %v", v, err)
	}

	// A status the trace has, with nothing else, changes nothing; with a key, writes the key.
	same, none, err := s.Apply(ctx, rec.ID, "g", Update{Status: StatusQuarantined})
	if err != nil || len(none) != 0 || same.Length != 8 {
		t.Fatalf("Apply of the current status = %+v, %v, %v", same, none, err)
	}
	same, none, err = s.Apply(ctx, rec.ID, "g", Update{Extra: []storage.Op{{Kind: storage.OpPut, Key: []byte("exec/3"), Value: []byte("k")}}})
	if err != nil || len(none) != 0 || same.Length != 8 || string(rawGet(t, st, ns, []byte("exec/3"))) != "k" {
		t.Fatalf("Apply of a key alone = %+v, %v, %v", same, none, err)
	}
	// Reactivating and merging through Apply.
	rec, _, err = s.Apply(ctx, rec.ID, "admin", Update{Status: StatusActive, Reason: "false positive"})
	if err != nil || rec.Status != StatusActive || rec.Length != 9 {
		t.Fatalf("reactivate = %+v, %v", rec, err)
	}

	var buf bytes.Buffer
	if _, err := s.WriteBundle(ctx, &buf, BundleScope{SessionID: session}); err != nil {
		t.Fatal(err)
	}
	sum, err := VerifyBundle(&buf, VerifyOptions{TrustedKey: s.PublicKey()})
	if err != nil || sum.Traces != 1 || sum.Entries != 9 {
		t.Fatalf("VerifyBundle = %+v, %v", sum, err)
	}
}

// TestApplyErrors checks that a refused update writes nothing.
func TestApplyErrors(t *testing.T) {
	ctx := context.Background()
	st := &countingWrites{Storage: memstore.New()}
	s := newStore(t, st)
	session := NewID()
	rec, err := s.Create(ctx, session, TraceCustom, nil, "t")
	if err != nil {
		t.Fatal(err)
	}
	full, err := s.Create(ctx, session, TraceCustom, nil, "t")
	if err != nil {
		t.Fatal(err)
	}
	flags := make([]Flag, MaxFlags)
	for i := range flags {
		flags[i] = Flag{Flag: governance.FlagAnomaly, Severity: 1}
	}
	if _, _, err := s.Apply(ctx, full.ID, "g", Update{Flags: flags}); err != nil {
		t.Fatal(err)
	}
	put := func(key string) storage.Op {
		return storage.Op{Kind: storage.OpPut, Key: []byte(key), Value: []byte("v")}
	}
	// Extra ops large or many enough to overflow one storage batch (cheap to build, unlike
	// entries of that size).
	big := make([]byte, storage.MaxValueSize)
	large := []storage.Op{put("exec/a"), put("exec/b"), put("exec/c"), put("exec/d")}
	for i := range large {
		large[i].Value = big
	}
	many := make([]storage.Op, storage.MaxBatchOps)
	for i := range many {
		many[i] = put(fmt.Sprintf("exec/%d", i))
	}
	tests := []struct {
		name  string
		trace string
		u     Update
		want  error
		msg   string
	}{
		{"reserved entry kind", rec.ID, Update{Entries: []Entry{{Kind: KindFlagged}}}, ErrInvalid, "written by the host only"},
		{"bad entry kind", rec.ID, Update{Entries: []Entry{{Kind: "ok"}, {Kind: "Bad"}}}, ErrInvalid, "entry 1 kind"},
		{"bad entry agent", rec.ID, Update{Entries: []Entry{{Kind: "ok", Agent: "a\x00"}}}, ErrInvalid, "agent"},
		{"bad entry data", rec.ID, Update{Entries: []Entry{{Kind: "ok", Data: json.RawMessage(`{`)}}}, ErrInvalid, "data"},
		{"bad flag", rec.ID, Update{Flags: []Flag{{Flag: "Jailbreak", Severity: 5}}}, ErrInvalid, "unknown flag"},
		{"unknown status", rec.ID, Update{Status: "deleted"}, ErrInvalid, "unknown status"},
		{"reason without status", rec.ID, Update{Reason: "why"}, ErrInvalid, "no status"},
		{"assertion in extra", rec.ID, Update{Extra: []storage.Op{{Kind: storage.OpAssertAbsent, Key: []byte("x")}}}, ErrInvalid, "only puts and deletes"},
		{"record key in extra", rec.ID, Update{Extra: []storage.Op{put("trace/" + rec.ID)}}, ErrInvalid, "belongs to the trace store"},
		{"entry key in extra", rec.ID, Update{Extra: []storage.Op{put("prov/x")}}, ErrInvalid, "belongs to the trace store"},
		{"checkpoint key in extra", rec.ID, Update{Extra: []storage.Op{put("ckpt/x")}}, ErrInvalid, "belongs to the trace store"},
		{"empty extra key", rec.ID, Update{Extra: []storage.Op{put("")}}, ErrInvalid, "key is empty"},
		{"too large for one batch", rec.ID, Update{Entries: []Entry{{Kind: "a"}}, Extra: large}, ErrInvalid, "one storage batch"},
		{"too many ops for one batch", rec.ID, Update{Entries: []Entry{{Kind: "a"}}, Extra: many}, ErrInvalid, "one storage batch"},
		{"too many flags", full.ID, Update{Entries: []Entry{{Kind: "a"}}, Flags: []Flag{{Flag: governance.FlagAnomaly, Severity: 1}}}, ErrInvalid, "exceed the limit"},
		{"unknown trace", NewID(), Update{Entries: []Entry{{Kind: "a"}}}, ErrNotFound, ""},
		{"malformed trace id", "x", Update{Entries: []Entry{{Kind: "a"}}}, ErrNotFound, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st.take()
			_, _, err := s.Apply(ctx, tc.trace, "g", tc.u)
			if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.msg) {
				t.Fatalf("got %v, want %v with %q", err, tc.want, tc.msg)
			}
			if n := st.take(); n != 0 {
				t.Fatalf("a refused update made %d storage writes", n)
			}
		})
	}
	if _, _, err := s.CreateWith(ctx, session, TraceCustom, nil, "t", Update{Entries: []Entry{{Kind: KindCreated}}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("CreateWith of a reserved kind: %v, want ErrInvalid", err)
	}
	if n := st.take(); n != 0 {
		t.Fatalf("a refused CreateWith made %d storage writes", n)
	}
	if v, err := s.Verify(ctx, rec.ID); err != nil || !v.Valid || v.Length != 1 {
		t.Fatalf("Verify after refused updates = %+v, %v", v, err)
	}
}

// TestCatchUpLaggingRecord stores an entry without its checkpoint and record, as a crash in
// a host version that wrote them one by one left it, or as someone without the host key
// would forge it (the two cannot be told apart). Reads catch the record up, but Verify says
// that no signed checkpoint covers the entry, and an update that would sign a longer chain
// is refused with ErrCorrupt and writes nothing; one that has nothing to write (the lone
// entry made the change asked for) signs nothing either.
func TestCatchUpLaggingRecord(t *testing.T) {
	ctx := context.Background()
	quarantine, err := canonicalJSON(statusInfo{Status: StatusQuarantined, Reason: "r"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		readFirst bool
		kind      string
		data      json.RawMessage
		update    Update
		refused   bool
	}{
		{"read, then append", true, "lone", json.RawMessage("null"), Update{Entries: []Entry{{Kind: "next"}}}, true},
		{"append", false, "lone", json.RawMessage("null"), Update{Entries: []Entry{{Kind: "next"}}}, true},
		{"status the lone entry set", false, KindQuarantined, quarantine, Update{Status: StatusQuarantined}, false},
		{"status the lone entry set, and more", false, KindQuarantined, quarantine, Update{Status: StatusQuarantined, Entries: []Entry{{Kind: "next"}}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := memstore.New()
			s := newStore(t, st)
			rec, err := s.Create(ctx, NewID(), TraceCustom, nil, "t")
			if err != nil {
				t.Fatal(err)
			}
			ns := SessionNamespace(DefaultTenant, rec.SessionID)
			lone := Entry{TraceID: rec.ID, SessionID: rec.SessionID, Index: 1, Kind: tc.kind, Data: tc.data, Timestamp: rec.CreatedAt, PrevHash: rec.Head}
			raw, err := sealEntry(&lone)
			if err != nil {
				t.Fatal(err)
			}
			put(t, st, ns, entryKey(rec.ID, 1), raw)
			unsigned := func(when string) {
				t.Helper()
				v, err := s.Verify(ctx, rec.ID)
				if err != nil || v.Valid || v.Length != 2 || v.SignedLength != 1 || !strings.Contains(v.Error, "entry 1 is not covered by a checkpoint") {
					t.Fatalf("Verify %s = %+v, %v; want entry 1 reported unsigned", when, v, err)
				}
			}
			unsigned("of a lagging record")
			if tc.readFirst {
				if got, err := s.Get(ctx, rec.ID); err != nil || got.Length != 2 || got.Head != lone.Hash {
					t.Fatalf("Get = %+v, %v; want the record caught up", got, err)
				}
				if stored, err := parseRecord(rawGet(t, st, ns, recordKey(rec.ID))); err != nil || stored.Length != 2 {
					t.Fatalf("stored record after Get: %+v, %v", stored, err)
				}
			}
			got, entries, err := s.Apply(ctx, rec.ID, "t", tc.update)
			switch {
			case tc.refused && !errors.Is(err, ErrCorrupt):
				t.Fatalf("Apply = %+v, %v; want ErrCorrupt", got, err)
			case !tc.refused && (err != nil || len(entries) != 0 || got.Status != StatusQuarantined):
				t.Fatalf("Apply = %+v, %d entries, %v; want nothing written, status %s", got, len(entries), err, StatusQuarantined)
			}
			if _, ok, _ := st.Get(ctx, ns, entryKey(rec.ID, 2)); ok {
				t.Fatal("Apply extended a chain whose last entry is unsigned")
			}
			if lengths := checkpointLengths(t, st, ns, rec.ID); !slices.Equal(lengths, []int64{1}) {
				t.Fatalf("checkpoints of lengths %v, want only [1]", lengths)
			}
			unsigned("after the update")
		})
	}
}

// TestApplyRefusesRemovedTail removes a chain's last entry and rolls its record back, as an
// attacker with storage access could: the next update must not overwrite the checkpoint
// that proves the removal.
func TestApplyRefusesRemovedTail(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	s := newStore(t, st)
	rec := fourEntryTrace(t, s)
	ns := SessionNamespace(DefaultTenant, rec.SessionID)
	proof := rawGet(t, st, ns, ckptKey(rec.ID, 4))
	del(t, st, ns, entryKey(rec.ID, 3))
	r := rec
	r.Length, r.Head = 3, mustEntry(t, st, ns, rec.ID, 2).Hash
	r.UpdatedAt = mustEntry(t, st, ns, rec.ID, 2).Timestamp
	put(t, st, ns, recordKey(rec.ID), mustCanonical(t, r))
	if _, err := s.Append(ctx, rec.ID, Entry{Kind: "cover-up"}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "entries were removed") {
		t.Fatalf("Append over a removed entry: %v, want ErrCorrupt", err)
	}
	if !bytes.Equal(rawGet(t, st, ns, ckptKey(rec.ID, 4)), proof) {
		t.Fatal("the checkpoint proving the removal was overwritten")
	}
	if _, ok, _ := st.Get(ctx, ns, entryKey(rec.ID, 3)); ok {
		t.Fatal("an entry was written over the removed one")
	}
}

// TestCreateAll: a trace created with a chosen id, a creation time and two updates in one
// write reads as if it had been created then and updated twice; the id cannot be taken
// again, on either kind of backend.
func TestCreateAll(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t, be.wrap(memstore.New()))
			session, id := NewID(), NewID()
			at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			rec, appended, err := s.CreateAll(ctx, Creation{
				ID: id, SessionID: session, Kind: TraceExecution, Data: json.RawMessage(`{"a":1}`), Agent: "t", At: at,
				Updates: []Update{
					{Flags: []Flag{{Flag: governance.FlagAnomaly, Severity: 2}}, At: at},
					{Entries: []Entry{{Kind: KindExecuted}}, Status: StatusQuarantined, Reason: "r"},
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if rec.ID != id || rec.Length != 4 || rec.Status != StatusQuarantined || len(appended) != 3 || !rec.CreatedAt.Equal(at) {
				t.Fatalf("record %+v, appended %d", rec, len(appended))
			}
			chain, err := s.Chain(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, e := range chain {
				kinds = append(kinds, e.Kind)
			}
			if !slices.Equal(kinds, []string{KindCreated, KindFlagged, KindExecuted, "quarantined"}) {
				t.Fatalf("chain %v", kinds)
			}
			if !chain[1].Timestamp.Equal(at) || !chain[2].Timestamp.After(at) || !rec.Flags[0].Timestamp.Equal(at) {
				t.Fatalf("timestamps %v %v, flag %v", chain[1].Timestamp, chain[2].Timestamp, rec.Flags[0].Timestamp)
			}
			if v, err := s.Verify(ctx, id); err != nil || !v.Valid || v.SignedLength != 4 {
				t.Fatalf("verify %+v %v", v, err)
			}
			// The id is taken: refused, and the trace is untouched.
			_, _, err = s.CreateAll(ctx, Creation{ID: id, SessionID: NewID(), Kind: TraceCustom, Agent: "t"})
			if !errors.Is(err, ErrExists) {
				t.Fatalf("second create with the same id: %v, want ErrExists", err)
			}
			if got, err := s.Get(ctx, id); err != nil || got.SessionID != session || got.Length != 4 {
				t.Fatalf("after the refused create: %+v %v", got, err)
			}
			if _, _, err := s.CreateAll(ctx, Creation{ID: "nope", SessionID: session, Kind: TraceCustom, Agent: "t"}); !errors.Is(err, ErrInvalid) {
				t.Fatalf("malformed id: %v, want ErrInvalid", err)
			}
		})
	}
}
