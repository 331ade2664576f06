package trace

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/limitgraph/limit/internal/testbin"
	"github.com/limitgraph/limit/sdk/governance"
	"github.com/limitgraph/limit/sdk/sdktest"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// testKey signs everything the tests write.
var testKey = func() *Key {
	k, err := GenerateKey()
	if err != nil {
		panic(err)
	}
	return k
}()

func newStore(t testing.TB, st storage.Storage) *Store {
	t.Helper()
	s, err := New(st, testKey, Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// opener gives a test an empty storage backend.
type opener func(t *testing.T) storage.Storage

func memory(*testing.T) storage.Storage { return memstore.New() }

// suite runs the store's main tests against the backend open gives.
func suite(t *testing.T, open opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Storage)
	}{
		{"Lifecycle", testLifecycle},
		{"List", testList},
		{"Errors", testErrors},
		{"ConcurrentAppends", testConcurrentAppends},
		{"Apply", testApply},
		{"StorageTampering", testStorageTampering},
		{"Bundle", testBundleRoundTrip},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

func TestStoreMemory(t *testing.T) { suite(t, memory) }

// TestStoreBolt runs the same tests through the real storage-bolt plugin binary, over gRPC,
// on a database file: the durable backend the host uses by default.
func TestStoreBolt(t *testing.T) {
	bin := testbin.Plugin(t, "storage-bolt")
	suite(t, func(t *testing.T) storage.Storage {
		dir := t.TempDir()
		cfg := fmt.Appendf(nil, `{"path": %q}`, filepath.Join(dir, "trace.db"))
		st, stop, err := sdktest.LaunchStorage(context.Background(), bin, nil, cfg, dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		return st
	})
}

// recomputeHash computes an entry's hash from its stored bytes with nothing but
// encoding/json, Canonicalize and SHA-256, as an outside auditor would.
func recomputeHash(t *testing.T, raw []byte) string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	prev, _ := m["prev_hash"].(string)
	delete(m, "hash")
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Canonicalize(b)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(append([]byte(prev), c...))
	return hex.EncodeToString(sum[:])
}

// rawGet reads a key straight from storage.
func rawGet(t *testing.T, st storage.Storage, ns string, key []byte) []byte {
	t.Helper()
	v, ok, err := st.Get(context.Background(), ns, key)
	if err != nil || !ok {
		t.Fatalf("get %s %s: %v, present %v", ns, key, err, ok)
	}
	return v
}

// checkpointLengths lists the lengths of a trace's stored checkpoints after checking each
// signature with the test key.
func checkpointLengths(t *testing.T, st storage.Storage, ns, traceID string) []int64 {
	t.Helper()
	res, err := st.Scan(context.Background(), storage.ScanRequest{Namespace: ns, Prefix: ckptPrefix(traceID), Limit: storage.MaxScanLimit})
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, kv := range res.Items {
		var c Checkpoint
		if err := json.Unmarshal(kv.Value, &c); err != nil {
			t.Fatal(err)
		}
		sig, _ := hex.DecodeString(c.Signature)
		body := c
		body.Signature = ""
		msg, _ := canonicalJSON(body)
		if !ed25519.Verify(testKey.PublicKey(), msg, sig) {
			t.Fatalf("checkpoint %s: signature does not verify", kv.Key)
		}
		out = append(out, c.Length)
	}
	return out
}

func testLifecycle(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	s := newStore(t, st)
	session := NewID()
	rec, err := s.Create(ctx, session, TraceCustom, json.RawMessage(`{"b": 2, "a": [1.50, "x"]}`), "api")
	if err != nil {
		t.Fatal(err)
	}
	if !ValidID(rec.ID) || rec.SessionID != session || rec.Tenant != DefaultTenant || rec.Kind != TraceCustom ||
		rec.Status != StatusActive || rec.Length != 1 || rec.Flags == nil || len(rec.Flags) != 0 {
		t.Fatalf("Create returned %+v", rec)
	}
	if string(rec.Data) != `{"a":[1.5,"x"],"b":2}` {
		t.Fatalf("data stored as %s, want its canonical form", rec.Data)
	}
	if got := rawGet(t, st, IndexNamespace(DefaultTenant), []byte("trace/"+rec.ID)); string(got) != session {
		t.Fatalf("index entry holds %q, want the session id", got)
	}
	got, err := s.Get(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(rec)
	b, _ := json.Marshal(got)
	if !bytes.Equal(a, b) {
		t.Fatalf("Get returned\n%s\nwant\n%s", b, a)
	}

	e, err := s.Append(ctx, rec.ID, Entry{Kind: "note", Agent: "alice", Data: json.RawMessage(`{"k": "v"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if e.Index != 1 || e.PrevHash != rec.Head || e.TraceID != rec.ID || e.SessionID != session || string(e.Data) != `{"k":"v"}` {
		t.Fatalf("Append returned %+v", e)
	}
	ns := SessionNamespace(DefaultTenant, session)
	raw := rawGet(t, st, ns, entryKey(rec.ID, 1))
	if h := recomputeHash(t, raw); h != e.Hash {
		t.Fatalf("stored entry hashes to %s, entry says %s", h, e.Hash)
	}
	if e0 := rawGet(t, st, ns, entryKey(rec.ID, 0)); recomputeHash(t, e0) != rec.Head {
		t.Fatal("created entry's hash is not the record's head")
	}
	// The created entry covers the data.
	chain, err := s.Chain(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	var info createdInfo
	if err := json.Unmarshal(chain[0].Data, &info); err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(rec.Data); info.DataSHA256 != hex.EncodeToString(sum[:]) || info.Kind != TraceCustom {
		t.Fatalf("created entry holds %+v, want the data's SHA-256", info)
	}

	rec, err = s.AddFlag(ctx, rec.ID, Flag{Flag: governance.FlagJailbreak, Severity: 8, Reason: "ignore previous instructions", RuleID: "rule.jb", AutoDetected: true}, "governance")
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Flags) != 1 || rec.Flags[0].Flag != governance.FlagJailbreak || rec.Flags[0].Timestamp.IsZero() || rec.Length != 3 {
		t.Fatalf("AddFlag returned %+v", rec)
	}
	rec, err = s.SetStatus(ctx, rec.ID, StatusQuarantined, "governance", "severity 8 >= 7")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != StatusQuarantined || rec.Length != 4 {
		t.Fatalf("SetStatus returned %+v", rec)
	}
	rec, err = s.SetStatus(ctx, rec.ID, StatusQuarantined, "governance", "again")
	if err != nil || rec.Length != 4 {
		t.Fatalf("SetStatus to the same status: %+v, %v; want no new entry", rec, err)
	}
	if _, err := s.CopyToMerged(ctx, rec.ID); !errors.Is(err, ErrInvalid) {
		t.Fatalf("CopyToMerged of a quarantined trace: %v, want ErrInvalid", err)
	}

	chain, err = s.Chain(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range chain {
		kinds = append(kinds, e.Kind)
	}
	if want := []string{KindCreated, "note", KindFlagged, KindQuarantined}; !slices.Equal(kinds, want) {
		t.Fatalf("chain kinds %v, want %v", kinds, want)
	}
	if got := checkpointLengths(t, st, ns, rec.ID); !slices.Equal(got, []int64{1, 2, 3, 4}) {
		t.Fatalf("checkpoint lengths %v, want 1..4", got)
	}
	v, err := s.Verify(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := (VerifyResult{Valid: true, Length: 4, Head: rec.Head, SignedLength: 4, SignedBy: s.key.Fingerprint()}); v != want {
		t.Fatalf("Verify = %+v, want %+v", v, want)
	}

	// Merge: status first, then the copy into the shared namespace.
	rec, err = s.SetStatus(ctx, rec.ID, StatusMerged, "governance", "policy allows")
	if err != nil {
		t.Fatal(err)
	}
	merged, err := s.CopyToMerged(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if merged.Status != StatusMerged || merged.Length != 5 || merged.Head != rec.Head {
		t.Fatalf("CopyToMerged returned %+v", merged)
	}
	list, next, err := s.ListMerged(ctx, 0, "")
	if err != nil || next != "" || len(list) != 1 || list[0].ID != rec.ID {
		t.Fatalf("ListMerged = %+v, %q, %v", list, next, err)
	}
	mns := MergedNamespace(DefaultTenant)
	for i := range int64(5) {
		if !bytes.Equal(rawGet(t, st, mns, entryKey(rec.ID, i)), rawGet(t, st, ns, entryKey(rec.ID, i))) {
			t.Fatalf("merged copy of entry %d differs", i)
		}
	}
	if got := checkpointLengths(t, st, mns, rec.ID); !slices.Equal(got, []int64{1, 2, 3, 4, 5}) {
		t.Fatalf("merged checkpoints %v", got)
	}
	// A merged chain is final to Append; the host's own updates still apply.
	if _, err := s.Append(ctx, rec.ID, Entry{Kind: "note"}); !errors.Is(err, ErrFinal) {
		t.Fatalf("Append to a merged trace: %v, want ErrFinal", err)
	}
	// Withdrawn from the shared record: nothing of it is left there; copied back.
	if err := s.RemoveFromMerged(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if res, err := st.Scan(ctx, storage.ScanRequest{Namespace: mns}); err != nil || len(res.Items) != 0 {
		t.Fatalf("shared namespace after RemoveFromMerged: %d keys, %v", len(res.Items), err)
	}
	if err := s.RemoveFromMerged(ctx, rec.ID); err != nil {
		t.Fatalf("RemoveFromMerged again: %v", err)
	}
	if _, err := s.CopyToMerged(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	// A quarantined trace can be reactivated.
	other, err := s.Create(ctx, session, TraceExecution, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if string(other.Data) != "{}" {
		t.Fatalf("empty data stored as %s, want {}", other.Data)
	}
	if _, err := s.SetStatus(ctx, other.ID, StatusQuarantined, "", ""); err != nil {
		t.Fatal(err)
	}
	other, err = s.SetStatus(ctx, other.ID, StatusActive, "admin", "false positive")
	if err != nil || other.Status != StatusActive || other.Length != 3 {
		t.Fatalf("reactivate: %+v, %v", other, err)
	}
	if chain, _ := s.Chain(ctx, other.ID); chain[2].Kind != KindReactivated {
		t.Fatalf("reactivation appended %q", chain[2].Kind)
	}
}

func testList(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	s := newStore(t, st)
	a, b := NewID(), NewID()
	var want []string
	for i := range 7 {
		rec, err := s.Create(ctx, a, TraceCustom, json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), "t")
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, rec.ID)
	}
	for range 2 {
		if _, err := s.Create(ctx, b, TraceCustom, nil, "t"); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	token := ""
	pages := 0
	for {
		page, next, err := s.ListBySession(ctx, a, 3, token)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range page {
			if r.SessionID != a {
				t.Fatalf("session %s listed a trace of %s", a, r.SessionID)
			}
			got = append(got, r.ID)
		}
		if next == "" {
			break
		}
		token = next
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("listed %v in %d pages, want %v (creation order) in 3", got, pages, want)
	}
	other, _, err := s.ListBySession(ctx, b, 0, "")
	if err != nil || len(other) != 2 {
		t.Fatalf("session b lists %d traces (%v), want 2", len(other), err)
	}
	empty, next, err := s.ListBySession(ctx, NewID(), 10, "")
	if err != nil || len(empty) != 0 || next != "" {
		t.Fatalf("unknown session lists %v, %q, %v", empty, next, err)
	}
	for _, tok := range []string{"x", "dDE6bm9wZQ", encodeToken("not-an-id")} {
		if _, _, err := s.ListBySession(ctx, a, 3, tok); !errors.Is(err, ErrInvalid) {
			t.Errorf("token %q: %v, want ErrInvalid", tok, err)
		}
	}
	if _, _, err := s.ListBySession(ctx, "../x", 3, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("malformed session id: %v, want ErrNotFound", err)
	}
	if _, _, err := s.ListBySession(ctx, a, -1, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative page size: %v, want ErrInvalid", err)
	}
}

func testErrors(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	s := newStore(t, st)
	session := NewID()
	rec, err := s.Create(ctx, session, TraceCustom, json.RawMessage(`{}`), "t")
	if err != nil {
		t.Fatal(err)
	}
	// A crash between the index entry and the trace batch leaves a dangling index entry.
	dangling := NewID()
	if err := st.Put(ctx, IndexNamespace(DefaultTenant), recordKey(dangling), []byte(session)); err != nil {
		t.Fatal(err)
	}
	deep := strings.Repeat(`{"a":`, MaxDataNesting+1) + "1" + strings.Repeat("}", MaxDataNesting+1)
	okFlag := Flag{Flag: governance.FlagUnsafe, Severity: 5}
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"get malformed id", func() error { _, err := s.Get(ctx, "nope"); return err }, ErrNotFound},
		{"get lower-case id", func() error { _, err := s.Get(ctx, strings.ToLower(rec.ID)); return err }, ErrNotFound},
		{"get unknown id", func() error { _, err := s.Get(ctx, NewID()); return err }, ErrNotFound},
		{"get dangling index entry", func() error { _, err := s.Get(ctx, dangling); return err }, ErrNotFound},
		{"verify dangling index entry", func() error { _, err := s.Verify(ctx, dangling); return err }, ErrNotFound},
		{"chain unknown id", func() error { _, err := s.Chain(ctx, NewID()); return err }, ErrNotFound},
		{"create bad session", func() error { _, err := s.Create(ctx, "s1", TraceCustom, nil, ""); return err }, ErrInvalid},
		{"create bad kind", func() error { _, err := s.Create(ctx, session, "Custom", nil, ""); return err }, ErrInvalid},
		{"create array data", func() error { _, err := s.Create(ctx, session, TraceCustom, json.RawMessage(`[1]`), ""); return err }, ErrInvalid},
		{"create invalid json", func() error { _, err := s.Create(ctx, session, TraceCustom, json.RawMessage(`{"a":}`), ""); return err }, ErrInvalid},
		{"create duplicate key", func() error {
			_, err := s.Create(ctx, session, TraceCustom, json.RawMessage(`{"a":1,"a":2}`), "")
			return err
		}, ErrInvalid},
		{"create too deep", func() error { _, err := s.Create(ctx, session, TraceCustom, json.RawMessage(deep), ""); return err }, ErrInvalid},
		{"create bad agent", func() error { _, err := s.Create(ctx, session, TraceCustom, nil, "a\nb"); return err }, ErrInvalid},
		{"append reserved kind", func() error { _, err := s.Append(ctx, rec.ID, Entry{Kind: KindFlagged}); return err }, ErrInvalid},
		{"append merged kind", func() error { _, err := s.Append(ctx, rec.ID, Entry{Kind: KindMerged}); return err }, ErrInvalid},
		{"append empty kind", func() error { _, err := s.Append(ctx, rec.ID, Entry{}); return err }, ErrInvalid},
		{"append bad data", func() error {
			_, err := s.Append(ctx, rec.ID, Entry{Kind: "note", Data: json.RawMessage(`"\ud800"`)})
			return err
		}, ErrInvalid},
		{"append unknown trace", func() error { _, err := s.Append(ctx, NewID(), Entry{Kind: "note"}); return err }, ErrNotFound},
		{"flag seed spelling", func() error {
			_, err := s.AddFlag(ctx, rec.ID, Flag{Flag: "Jailbreak", Severity: 5}, "")
			return err
		}, ErrInvalid},
		{"flag severity 0", func() error { _, err := s.AddFlag(ctx, rec.ID, Flag{Flag: "unsafe", Severity: 0}, ""); return err }, ErrInvalid},
		{"flag severity 11", func() error { _, err := s.AddFlag(ctx, rec.ID, Flag{Flag: "unsafe", Severity: 11}, ""); return err }, ErrInvalid},
		{"flag unknown trace", func() error { _, err := s.AddFlag(ctx, NewID(), okFlag, ""); return err }, ErrNotFound},
		{"status unknown", func() error { _, err := s.SetStatus(ctx, rec.ID, "deleted", "", ""); return err }, ErrInvalid},
		{"status unknown trace", func() error { _, err := s.SetStatus(ctx, NewID(), StatusMerged, "", ""); return err }, ErrNotFound},
		{"copy unknown trace", func() error { _, err := s.CopyToMerged(ctx, NewID()); return err }, ErrNotFound},
		{"copy active trace", func() error { _, err := s.CopyToMerged(ctx, rec.ID); return err }, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// Nothing above changed the trace.
	if v, err := s.Verify(ctx, rec.ID); err != nil || !v.Valid || v.Length != 1 {
		t.Fatalf("Verify after refused calls = %+v, %v", v, err)
	}
}

// testConcurrentAppends appends from 16 goroutines, split over four Stores (four "hosts"
// sharing the storage, which race through conditional batches alone), by Append, AddFlag and
// Apply of several entries, and checks that the result is one valid chain of the right
// length, with every write's entries contiguous.
func testConcurrentAppends(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	hosts := []*Store{newStore(t, st), newStore(t, st), newStore(t, st), newStore(t, st)}
	rec, err := hosts[0].Create(ctx, NewID(), TraceCustom, nil, "t")
	if err != nil {
		t.Fatal(err)
	}
	// Each writer makes each-1 single appends and one Apply of two entries and a flag.
	const writers, each = 16, 8
	const perWriter = each - 1 + 3
	indices := make([][]int64, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			s := hosts[w%len(hosts)]
			for i := range each {
				agent := fmt.Sprint("w", w)
				switch i {
				case each / 2:
					r, err := s.AddFlag(ctx, rec.ID, Flag{Flag: governance.FlagAnomaly, Severity: 1 + w%10}, agent)
					if err != nil {
						errs[w] = err
						return
					}
					indices[w] = append(indices[w], r.Length-1)
				case each / 3:
					r, es, err := s.Apply(ctx, rec.ID, agent, Update{
						Entries: []Entry{{Kind: "step", Data: json.RawMessage(`"a"`)}, {Kind: "step", Data: json.RawMessage(`"b"`)}},
						Flags:   []Flag{{Flag: governance.FlagUnverified, Severity: 2}},
					})
					if err != nil {
						errs[w] = err
						return
					}
					if len(es) != 3 || es[2].Index != r.Length-1 || es[1].Index != es[0].Index+1 || es[2].Index != es[1].Index+1 {
						errs[w] = fmt.Errorf("Apply returned entries %+v and a record of length %d", es, r.Length)
						return
					}
					for _, e := range es {
						indices[w] = append(indices[w], e.Index)
					}
				default:
					e, err := s.Append(ctx, rec.ID, Entry{Kind: "step", Agent: agent, Data: json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))})
					if err != nil {
						errs[w] = err
						return
					}
					indices[w] = append(indices[w], e.Index)
				}
			}
		})
	}
	wg.Wait()
	var all []int64
	for w := range writers {
		if errs[w] != nil {
			t.Fatalf("writer %d: %v", w, errs[w])
		}
		all = append(all, indices[w]...)
	}
	slices.Sort(all)
	const total = writers*perWriter + 1
	for i, idx := range all {
		if idx != int64(i+1) {
			t.Fatalf("indices handed out: %v; want each of 1..%d once", all, total-1)
		}
	}
	v, err := hosts[1].Verify(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Valid || v.Length != total || v.SignedLength != total {
		t.Fatalf("Verify = %+v, want a valid chain of %d entries, all signed", v, total)
	}
	// Every append returned after the record reflected it.
	raw := rawGet(t, st, SessionNamespace(DefaultTenant, rec.SessionID), recordKey(rec.ID))
	stored, err := parseRecord(raw)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Length != total || len(stored.Flags) != 2*writers || stored.Head != v.Head {
		t.Fatalf("stored record has length %d, %d flags, head %s; want %d, %d, %s", stored.Length, len(stored.Flags), stored.Head, total, 2*writers, v.Head)
	}
}

// testStorageTampering changes what storage holds behind the store's back and checks that
// Verify says what is wrong, and that the store refuses to extend or export a broken chain.
func testStorageTampering(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	other, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		tamper func(t *testing.T, ns string, rec Record)
		want   string
	}{
		{"entry data changed", func(t *testing.T, ns string, rec Record) {
			raw := rawGet(t, st, ns, entryKey(rec.ID, 1))
			put(t, st, ns, entryKey(rec.ID, 1), bytes.Replace(raw, []byte(`"v":1`), []byte(`"v":2`), 1))
		}, "entry 1: hash"},
		{"entry removed from the middle", func(t *testing.T, ns string, rec Record) {
			del(t, st, ns, entryKey(rec.ID, 1))
		}, "entry 1 is missing"},
		{"last entry removed", func(t *testing.T, ns string, rec Record) {
			del(t, st, ns, entryKey(rec.ID, 3))
		}, "record says provenance_length 4 but the chain has 3"},
		{"last entry and record rolled back", func(t *testing.T, ns string, rec Record) {
			del(t, st, ns, entryKey(rec.ID, 3))
			r := rec
			r.Length, r.Head = 3, mustEntry(t, st, ns, rec.ID, 2).Hash
			r.UpdatedAt = mustEntry(t, st, ns, rec.ID, 2).Timestamp
			put(t, st, ns, recordKey(rec.ID), mustCanonical(t, r))
		}, "entries were removed"},
		{"record data changed", func(t *testing.T, ns string, rec Record) {
			r := rec
			r.Data = json.RawMessage(`{"n":2}`)
			put(t, st, ns, recordKey(rec.ID), mustCanonical(t, r))
		}, "data hashes to"},
		{"flag removed from record", func(t *testing.T, ns string, rec Record) {
			r := rec
			r.Flags = []Flag{}
			put(t, st, ns, recordKey(rec.ID), mustCanonical(t, r))
		}, "flags"},
		{"status changed in record", func(t *testing.T, ns string, rec Record) {
			r := rec
			r.Status = StatusMerged
			put(t, st, ns, recordKey(rec.ID), mustCanonical(t, r))
		}, "record says status merged"},
		{"checkpoint signature changed", func(t *testing.T, ns string, rec Record) {
			raw := rawGet(t, st, ns, ckptKey(rec.ID, 2))
			var c Checkpoint
			json.Unmarshal(raw, &c)
			c.Length = 3
			put(t, st, ns, ckptKey(rec.ID, 2), mustCanonical(t, c))
		}, "signature does not verify"},
		{"checkpoint signed by another key", func(t *testing.T, ns string, rec Record) {
			c := Checkpoint{SessionID: rec.SessionID, TraceID: rec.ID, Length: 4, Head: rec.Head}
			raw, _ := signCheckpoint(other, &c)
			put(t, st, ns, ckptKey(rec.ID, 4), raw)
		}, "not by the host key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, st)
			rec := fourEntryTrace(t, s)
			ns := SessionNamespace(DefaultTenant, rec.SessionID)
			tc.tamper(t, ns, rec)
			v, err := s.Verify(ctx, rec.ID)
			if err != nil {
				t.Fatal(err)
			}
			if v.Valid || !strings.Contains(v.Error, tc.want) {
				t.Fatalf("Verify = %+v, want invalid with an error containing %q", v, tc.want)
			}
			if _, err := s.WriteBundle(ctx, new(bytes.Buffer), BundleScope{TraceIDs: []string{rec.ID}}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("WriteBundle of a broken trace: %v, want ErrCorrupt", err)
			}
		})
	}
}

// fourEntryTrace creates a trace with entries created, note {"v":1}, flagged, note.
func fourEntryTrace(t *testing.T, s *Store) Record {
	t.Helper()
	ctx := context.Background()
	rec, err := s.Create(ctx, NewID(), TraceCustom, json.RawMessage(`{"n":1}`), "t")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, rec.ID, Entry{Kind: "note", Data: json.RawMessage(`{"v":1}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddFlag(ctx, rec.ID, Flag{Flag: governance.FlagHighRisk, Severity: 6, Reason: "r"}, "g"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, rec.ID, Entry{Kind: "note", Data: json.RawMessage(`{"v":3}`)}); err != nil {
		t.Fatal(err)
	}
	rec, err = s.Get(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func put(t *testing.T, st storage.Storage, ns string, key, value []byte) {
	t.Helper()
	if err := st.Put(context.Background(), ns, key, value); err != nil {
		t.Fatal(err)
	}
}

func del(t *testing.T, st storage.Storage, ns string, key []byte) {
	t.Helper()
	if _, err := st.Delete(context.Background(), ns, key); err != nil {
		t.Fatal(err)
	}
}

func mustCanonical(t *testing.T, v any) []byte {
	t.Helper()
	b, err := canonicalJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustEntry(t *testing.T, st storage.Storage, ns, traceID string, i int64) Entry {
	t.Helper()
	e, _, err := parseEntry(rawGet(t, st, ns, entryKey(traceID, i)))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// racer runs before once, just before the first batch that claims an entry (asserting that
// its key is free), to make another host win the race for that index.
type racer struct {
	storage.Storage
	once   sync.Once
	before func()
}

func (r *racer) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	if len(ops) > 0 && ops[0].Kind == storage.OpAssertAbsent && bytes.HasPrefix(ops[0].Key, []byte("prov/")) {
		r.once.Do(r.before)
	}
	return r.Storage.Batch(ctx, ns, ops)
}

// TestAppendLosesRace makes another host take the index an append is about to claim: the
// append follows the winner's entry and lands on the next index. A winner whose entry does
// not link to the chain makes the append fail with ErrCorrupt instead of forking the chain.
func TestAppendLosesRace(t *testing.T) {
	ctx := context.Background()
	base := memstore.New()
	other := newStore(t, base)
	rec, err := other.Create(ctx, NewID(), TraceCustom, nil, "t")
	if err != nil {
		t.Fatal(err)
	}
	var theirs Entry
	r := &racer{Storage: base, before: func() {
		theirs, err = other.Append(ctx, rec.ID, Entry{Kind: "theirs"})
		if err != nil {
			t.Error(err)
		}
	}}
	mine, err := newStore(t, r).Append(ctx, rec.ID, Entry{Kind: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	if theirs.Index != 1 || mine.Index != 2 || mine.PrevHash != theirs.Hash {
		t.Fatalf("theirs %d %s, mine %d after %s; want mine at 2 after theirs", theirs.Index, theirs.Hash, mine.Index, mine.PrevHash)
	}
	if v, err := other.Verify(ctx, rec.ID); err != nil || !v.Valid || v.Length != 3 || v.SignedLength != 3 {
		t.Fatalf("Verify = %+v, %v", v, err)
	}

	// A forged winner: an entry at the next index that does not link to the chain.
	ns := SessionNamespace(DefaultTenant, rec.SessionID)
	r = &racer{Storage: base, before: func() {
		forged := Entry{TraceID: rec.ID, SessionID: rec.SessionID, Index: 3, Kind: "forged", Data: json.RawMessage("null"), PrevHash: GenesisHash}
		raw, _ := sealEntry(&forged)
		put(t, base, ns, entryKey(rec.ID, 3), raw)
	}}
	if _, err := newStore(t, r).Append(ctx, rec.ID, Entry{Kind: "mine"}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("append after a forged entry: %v, want ErrCorrupt", err)
	}
	if v, _ := other.Verify(ctx, rec.ID); v.Valid || !strings.Contains(v.Error, "entry 3: prev_hash") {
		t.Fatalf("Verify after a forged entry = %+v", v)
	}
}

// TestCheckSeesTheRecordItExtends: an update's Check is called with the record the update
// lands on: when another host flags the trace after this store read it, the check runs
// again on the flagged record and can refuse the update.
func TestCheckSeesTheRecordItExtends(t *testing.T) {
	ctx := context.Background()
	base := memstore.New()
	other := newStore(t, base)
	rec, err := other.Create(ctx, NewID(), TraceCustom, nil, "t")
	if err != nil {
		t.Fatal(err)
	}
	r := &racer{Storage: base, before: func() {
		if _, err := other.AddFlag(ctx, rec.ID, Flag{Flag: "jailbreak", Severity: 3, Reason: "r", RuleID: "x"}, "t"); err != nil {
			t.Error(err)
		}
	}}
	refuse := errors.New("flagged")
	var seen []int
	_, _, err = newStore(t, r).Apply(ctx, rec.ID, "t", Update{Status: StatusMerged, Reason: "ok", Check: func(cur Record) error {
		seen = append(seen, len(cur.Flags))
		if len(cur.Flags) > 0 {
			return refuse
		}
		return nil
	}})
	if !errors.Is(err, refuse) || !slices.Equal(seen, []int{0, 1}) {
		t.Fatalf("Apply = %v after checks of records with flags %v; want the refusal after [0 1]", err, seen)
	}
	if got, err := other.Get(ctx, rec.ID); err != nil || got.Status != StatusActive || len(got.Flags) != 1 {
		t.Fatalf("trace after the refused update: %+v, %v", got, err)
	}
}
