package trace

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// batchHook runs hook before every Batch to a namespace whose name starts with prefix; a
// hook that returns an error fails the batch without applying it.
type batchHook struct {
	storage.Storage
	prefix string
	hook   func(ns string, ops []storage.Op) error
}

func (h *batchHook) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	if h.hook != nil && strings.HasPrefix(ns, h.prefix) {
		if err := h.hook(ns, ops); err != nil {
			return err
		}
	}
	return h.Storage.Batch(ctx, ns, ops)
}

// TestCreateAllAfterIndexOnly: on a backend without batches over several namespaces, a
// create with a chosen id whose index entry landed but whose trace did not (its second
// write failed) left the id taken by no trace: creating it again failed with ErrExists,
// and applying to it with ErrNotFound, so an execution whose early create failed that way
// lost its outcome. Creating it again now stores the trace.
func TestCreateAllAfterIndexOnly(t *testing.T) {
	ctx := context.Background()
	base := memstore.New()
	failed := false
	st := &batchHook{Storage: singleNamespace{base}, prefix: SessionNamespace(DefaultTenant, ""), hook: func(string, []storage.Op) error {
		if !failed {
			failed = true
			return storage.ErrUnavailable
		}
		return nil
	}}
	s := newStore(t, st)
	cr := Creation{ID: NewID(), SessionID: NewID(), Kind: TraceExecution, Data: json.RawMessage(`{"a":1}`), Agent: "t"}
	if _, _, err := s.CreateAll(ctx, cr); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("first create: %v, want the storage failure", err)
	}
	if _, err := s.Get(ctx, cr.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after the failed create: Get = %v, want ErrNotFound", err)
	}
	cr.Updates = []Update{{Entries: []Entry{{Kind: KindExecuted}}}}
	rec, _, err := s.CreateAll(ctx, cr)
	if err != nil {
		t.Fatalf("create again: %v", err)
	}
	if got, err := s.Get(ctx, cr.ID); err != nil || got.Length != 2 || got.Head != rec.Head {
		t.Fatalf("Get = %+v, %v; want the created trace of 2 entries", got, err)
	}
	if v, err := s.Verify(ctx, cr.ID); err != nil || !v.Valid || v.SignedLength != 2 {
		t.Fatalf("Verify = %+v, %v", v, err)
	}
	// The id is a trace's now.
	if _, _, err := s.CreateAll(ctx, cr); !errors.Is(err, ErrExists) {
		t.Fatalf("third create: %v, want ErrExists", err)
	}
}

// TestCreateAllSameIDRace: two creates of one chosen id on a backend without batches over
// several namespaces, the first held between its index entry and its trace while the
// second (another host) completes the trace. The first must then fail with ErrExists, not
// write its own chain over the second's.
func TestCreateAllSameIDRace(t *testing.T) {
	ctx := context.Background()
	base := memstore.New()
	held, release := make(chan struct{}), make(chan struct{})
	first := true
	st := &batchHook{Storage: singleNamespace{base}, prefix: SessionNamespace(DefaultTenant, ""), hook: func(string, []storage.Op) error {
		if first {
			first = false
			close(held)
			<-release
		}
		return nil
	}}
	a, b := newStore(t, st), newStore(t, singleNamespace{base})
	cr := Creation{ID: NewID(), SessionID: NewID(), Kind: TraceExecution, Agent: "t"}
	errA := make(chan error, 1)
	go func() {
		_, _, err := a.CreateAll(ctx, Creation{ID: cr.ID, SessionID: cr.SessionID, Kind: TraceExecution, Agent: "a",
			Updates: []Update{{Entries: []Entry{{Kind: "mine"}, {Kind: "mine"}}}}})
		errA <- err
	}()
	<-held
	rec, _, err := b.CreateAll(ctx, cr)
	close(release)
	if err != nil {
		t.Fatalf("second host's create: %v", err)
	}
	if err := <-errA; !errors.Is(err, ErrExists) {
		t.Fatalf("first host's create: %v, want ErrExists", err)
	}
	if v, err := b.Verify(ctx, cr.ID); err != nil || !v.Valid || v.Length != 1 || v.Head != rec.Head {
		t.Fatalf("Verify = %+v, %v; want the second host's trace", v, err)
	}
}

// TestCopyToMergedOlderCopyLast: two copies of a merged trace, the older snapshot's write
// held until the newer copy (made after a flag was added) is written. The older copy must
// not replace the newer one in the shared record: ListMerged would show the trace without
// the flag its copy was replaced to show.
func TestCopyToMergedOlderCopyLast(t *testing.T) {
	ctx := context.Background()
	b, rec, release, errA := heldMergedCopy(t)
	if _, err := b.AddFlag(ctx, rec.ID, Flag{Flag: governance.FlagAnomaly, Severity: 2}, "gov"); err != nil {
		t.Fatal(err)
	}
	newer, err := b.CopyToMerged(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-errA; err != nil {
		t.Fatalf("older copy: %v", err)
	}
	list, _, err := b.ListMerged(ctx, 0, "")
	if err != nil || len(list) != 1 || list[0].Length != newer.Length || len(list[0].Flags) != 1 {
		t.Fatalf("ListMerged = %+v, %v; want the newer copy of %d entries with its flag", list, err, newer.Length)
	}
}

// TestCopyToMergedAfterWithdrawal: a copy whose snapshot was taken while the trace was
// merged, held at its write while the trace is withdrawn (its copy removed, then a flag
// and its new status appended, as the API's withdrawal does), must not put the withdrawn
// trace back into the shared record.
func TestCopyToMergedAfterWithdrawal(t *testing.T) {
	ctx := context.Background()
	b, rec, release, errA := heldMergedCopy(t)
	if err := b.RemoveFromMerged(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Apply(ctx, rec.ID, "api", Update{
		Flags: []Flag{{Flag: governance.FlagUnsafe, Severity: 9}}, Status: StatusQuarantined, Reason: "withdrawn",
	}); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-errA; err != nil {
		t.Fatalf("the held copy: %v", err)
	}
	list, _, err := b.ListMerged(ctx, 0, "")
	if err != nil || len(list) != 0 {
		t.Fatalf("ListMerged = %+v, %v; want nothing: the trace was withdrawn", list, err)
	}
	if in, err := b.InMerged(ctx, rec.ID); err != nil || in {
		t.Fatalf("InMerged = %v, %v; want false", in, err)
	}
}

// heldMergedCopy merges a new trace through store b and starts copying it into the shared
// record through a second store, whose write of the copy is held until release is closed;
// it returns once that copy has taken its snapshot, with the channel of its outcome.
func heldMergedCopy(t *testing.T) (b *Store, rec Record, release chan struct{}, copied <-chan error) {
	t.Helper()
	ctx := context.Background()
	base := memstore.New()
	held, release := make(chan struct{}), make(chan struct{})
	first := true
	st := &batchHook{Storage: base, prefix: MergedNamespace(DefaultTenant), hook: func(string, []storage.Op) error {
		if first {
			first = false
			close(held)
			<-release
		}
		return nil
	}}
	a, b := newStore(t, st), newStore(t, base)
	rec, err := b.Create(ctx, NewID(), TraceCustom, nil, "t")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.SetStatus(ctx, rec.ID, StatusMerged, "gov", "ok"); err != nil {
		t.Fatal(err)
	}
	errA := make(chan error, 1)
	go func() {
		_, err := a.CopyToMerged(ctx, rec.ID)
		errA <- err
	}()
	<-held
	return b, rec, release, errA
}

// TestOnlyIfMerged: an update made only while the trace is merged is refused with
// ErrNotMerged, writing nothing, once it is not; made while it is.
func TestOnlyIfMerged(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, memstore.New())
	rec, err := s.Create(ctx, NewID(), TraceCustom, nil, "t")
	if err != nil {
		t.Fatal(err)
	}
	u := Update{Flags: []Flag{{Flag: governance.FlagAnomaly, Severity: 2}}, OnlyIfMerged: true}
	if _, _, err := s.Apply(ctx, rec.ID, "api", u); !errors.Is(err, ErrNotMerged) {
		t.Fatalf("on an active trace: %v, want ErrNotMerged", err)
	}
	if got, err := s.Get(ctx, rec.ID); err != nil || got.Length != rec.Length || len(got.Flags) != 0 {
		t.Fatalf("after the refusal: %+v %v; want the trace unchanged", got, err)
	}
	if _, err := s.SetStatus(ctx, rec.ID, StatusMerged, "gov", "ok"); err != nil {
		t.Fatal(err)
	}
	if got, _, err := s.Apply(ctx, rec.ID, "api", u); err != nil || len(got.Flags) != 1 || got.Status != StatusMerged {
		t.Fatalf("on a merged trace: %+v %v", got, err)
	}
}

// TestMergedListingVerifiesCopies: the shared record's listing does not serve a copy whose
// record or data was changed in storage (its chain, copied with it, no longer vouches for
// it): it names it damaged, and lists the intact copies.
func TestMergedListingVerifiesCopies(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		tamper func(t *testing.T, st *memstore.Store, rec Record)
	}{
		{"data changed", func(t *testing.T, st *memstore.Store, rec Record) {
			r := rec
			r.Data = json.RawMessage(`{"input":"changed"}`)
			put(t, st, MergedNamespace(DefaultTenant), recordKey(rec.ID), mustCanonical(t, r))
		}},
		{"status changed", func(t *testing.T, st *memstore.Store, rec Record) {
			r := rec
			r.Flags = []Flag{}
			r.Kind = TraceExecution
			put(t, st, MergedNamespace(DefaultTenant), recordKey(rec.ID), mustCanonical(t, r))
		}},
		{"entry changed, hash kept", func(t *testing.T, st *memstore.Store, rec Record) {
			ns := MergedNamespace(DefaultTenant)
			raw := rawGet(t, st, ns, entryKey(rec.ID, 0))
			put(t, st, ns, entryKey(rec.ID, 0), bytes.Replace(raw, []byte(`"agent":"t"`), []byte(`"agent":"x"`), 1))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := memstore.New()
			s := newStore(t, st)
			var ids []string
			for range 2 {
				rec, err := s.Create(ctx, NewID(), TraceCustom, json.RawMessage(`{"input":"x"}`), "t")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.SetStatus(ctx, rec.ID, StatusMerged, "g", "ok"); err != nil {
					t.Fatal(err)
				}
				if _, err := s.CopyToMerged(ctx, rec.ID); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, rec.ID)
			}
			copied, _, err := parseMergedCopy(t, st, ids[0])
			if err != nil {
				t.Fatal(err)
			}
			tc.tamper(t, st, copied)
			p, err := s.MergedPage(ctx, 0, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Records) != 1 || p.Records[0].ID != ids[1] || len(p.Damaged) != 1 || p.Damaged[0] != ids[0] {
				t.Fatalf("MergedPage = %d records (%v), damaged %v; want %s listed, %s damaged", len(p.Records), p.Records, p.Damaged, ids[1], ids[0])
			}
		})
	}
}

// parseMergedCopy reads the record of a trace's copy in the merged namespace.
func parseMergedCopy(t *testing.T, st *memstore.Store, id string) (Record, []byte, error) {
	t.Helper()
	raw := rawGet(t, st, MergedNamespace(DefaultTenant), recordKey(id))
	rec, err := parseRecord(raw)
	return rec, raw, err
}
