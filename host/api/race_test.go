package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// hookStore is a storage whose operations call a hook before and after they run, so a
// test can run another request at a chosen point of one.
type hookStore struct {
	storage.Storage
	mu    sync.Mutex
	hooks []*storeHook
}

// storeHook runs run once, at the first operation match accepts.
type storeHook struct {
	match func(after bool, op, ns string, key []byte) bool
	run   func()
}

// at adds a hook that runs run (synchronously, in the operation's goroutine) at the first
// operation match accepts; it is then removed.
func (s *hookStore) at(match func(after bool, op, ns string, key []byte) bool, run func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = append(s.hooks, &storeHook{match: match, run: run})
}

func (s *hookStore) fire(after bool, op, ns string, key []byte) {
	s.mu.Lock()
	var run func()
	for i, h := range s.hooks {
		if h.match(after, op, ns, key) {
			run = h.run
			s.hooks = append(s.hooks[:i:i], s.hooks[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	if run != nil {
		run()
	}
}

func (s *hookStore) Get(ctx context.Context, ns string, key []byte) ([]byte, bool, error) {
	s.fire(false, "get", ns, key)
	defer s.fire(true, "get", ns, key)
	return s.Storage.Get(ctx, ns, key)
}

func (s *hookStore) Delete(ctx context.Context, ns string, key []byte) (bool, error) {
	s.fire(false, "delete", ns, key)
	defer s.fire(true, "delete", ns, key)
	return s.Storage.Delete(ctx, ns, key)
}

func (s *hookStore) Scan(ctx context.Context, req storage.ScanRequest) (storage.ScanResult, error) {
	s.fire(false, "scan", req.Namespace, req.Prefix)
	defer s.fire(true, "scan", req.Namespace, req.Prefix)
	return s.Storage.Scan(ctx, req)
}

func (s *hookStore) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	key := []byte(nil)
	if len(ops) > 0 {
		key = ops[len(ops)-1].Key
	}
	s.fire(false, "batch", ns, key)
	defer s.fire(true, "batch", ns, key)
	return s.Storage.Batch(ctx, ns, ops)
}

// raceFixture is an API server on hooked in-memory storage with one session.
type raceFixture struct {
	t       *testing.T
	st      *hookStore
	srv     *Server
	traces  *trace.Store
	stats   *governance.StatsStore
	session string
}

func newRaceFixture(t *testing.T) *raceFixture {
	t.Helper()
	st := &hookStore{Storage: memstore.New()}
	srv, traces, sessions, stats := serverOn(t, st)
	s, err := sessions.Create(context.Background(), session.CreateRequest{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	return &raceFixture{t: t, st: st, srv: srv, traces: traces, stats: stats, session: s.ID}
}

// call serves one request and returns its status and decoded body.
func (f *raceFixture) call(ctx context.Context, method, path, body string) (int, map[string]any) {
	rec := httptest.NewRecorder()
	f.srv.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)).WithContext(ctx))
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

func (f *raceFixture) newTrace() string {
	f.t.Helper()
	tr, err := f.traces.Create(context.Background(), f.session, trace.TraceCustom, json.RawMessage(`{"n":1}`), "api")
	if err != nil {
		f.t.Fatal(err)
	}
	return tr.ID
}

func (f *raceFixture) merge(id string) {
	f.t.Helper()
	if code, out := f.call(context.Background(), "POST", "/v1/traces/"+id+"/merge", ""); code != 200 {
		f.t.Fatalf("merge: %d %v", code, out)
	}
}

func (f *raceFixture) flagBody(id, flag string, severity int) string {
	return `{"trace_id":"` + id + `","flag":"` + flag + `","severity":` + string(rune('0'+severity)) + `,"reason":"r"}`
}

// flag flags trace id over the API and calls fail unless it answers 201 with the trace at
// status want.
func (f *raceFixture) flag(id, flag string, severity int, want string, fail func(string, ...any)) {
	f.t.Helper()
	if code, out := f.call(context.Background(), "POST", "/v1/governance/flag", f.flagBody(id, flag, severity)); code != 201 || out["status"] != want {
		fail("flag %s: %d %v", flag, code, out)
	}
}

// withdrawnOnce fails the test unless trace id is quarantined, out of the shared record,
// and the stats count one withdrawal and one quarantine.
func (f *raceFixture) withdrawnOnce(id string) {
	f.t.Helper()
	f.check(id, trace.StatusQuarantined)
	if st := f.sessionStats(); st.MergesWithdrawn != 1 || st.Quarantined != 1 {
		f.t.Fatalf("stats: %+v", st)
	}
}

// check fails the test unless the trace has status want and the shared record lists it
// exactly when it is merged.
func (f *raceFixture) check(id string, want trace.Status) {
	f.t.Helper()
	ctx := context.Background()
	rec, err := f.traces.Get(ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	in, err := f.traces.InMerged(ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	if rec.Status != want || in != (want == trace.StatusMerged) {
		f.t.Fatalf("trace is %s and in the shared record: %v; want %s", rec.Status, in, want)
	}
	if v, err := f.traces.Verify(ctx, id); err != nil || !v.Valid {
		f.t.Fatalf("verify: %+v %v", v, err)
	}
}

func (f *raceFixture) sessionStats() governance.Stats {
	f.t.Helper()
	st, err := f.stats.Get(context.Background(), f.session)
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

// afterRead matches the last storage read of the flag handler's first look at trace id
// (the scan for entries beyond its record), in the trace's session namespace.
func (f *raceFixture) afterRead(id string) func(bool, string, string, []byte) bool {
	ns := trace.SessionNamespace(trace.DefaultTenant, f.session)
	return func(after bool, op, n string, key []byte) bool {
		return after && op == "scan" && n == ns && bytes.Equal(key, []byte("prov/"+id+"/"))
	}
}

// TestFlagRacingMerge: a flag that read the trace active, then lost the race to a merge,
// must not quarantine the merged trace while its copy stays in the shared record; it
// withdraws it as a flag on a merged trace does.
func TestFlagRacingMerge(t *testing.T) {
	f := newRaceFixture(t)
	id := f.newTrace()
	f.st.at(f.afterRead(id), func() { f.merge(id) })
	code, out := f.call(context.Background(), "POST", "/v1/governance/flag", f.flagBody(id, "malicious", 9))
	if code != 201 || out["status"] != "quarantined" {
		t.Fatalf("flag: %d %v", code, out)
	}
	f.check(id, trace.StatusQuarantined)
	if st := f.sessionStats(); st.MergesAllowed != 1 || st.MergesWithdrawn != 1 || st.Quarantined != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestWithdrawalRacingCopy: a copy into the shared record made while a flag withdraws the
// trace (here a merge completing what it takes for a merge cut short, between the
// withdrawal's removal of the copy and its status change) does not leave the withdrawn
// trace listed as merged.
func TestWithdrawalRacingCopy(t *testing.T) {
	f := newRaceFixture(t)
	id := f.newTrace()
	f.merge(id)
	merged := trace.MergedNamespace(trace.DefaultTenant)
	sessionNS := trace.SessionNamespace(trace.DefaultTenant, f.session)
	f.st.at(func(after bool, op, ns string, key []byte) bool {
		return after && op == "delete" && ns == merged && bytes.Equal(key, []byte("trace/"+id))
	}, func() {
		// The removal is done once the withdrawal reads the trace to change it.
		f.st.at(func(after bool, op, ns string, key []byte) bool {
			return !after && op == "get" && ns == sessionNS && bytes.Equal(key, []byte("trace/"+id))
		}, func() {
			if code, out := f.call(context.Background(), "POST", "/v1/traces/"+id+"/merge", ""); code != 200 {
				t.Errorf("concurrent merge: %d %v", code, out)
			}
		})
	})
	code, out := f.call(context.Background(), "POST", "/v1/governance/flag", f.flagBody(id, "unsafe", 4))
	if code != 201 || out["status"] != "active" {
		t.Fatalf("flag: %d %v", code, out)
	}
	f.check(id, trace.StatusActive)
}

// TestTwoWithdrawingFlags: of two flags that both read the trace merged, the second to
// write must not undo the first's withdrawal: a trace quarantined by one is not
// reactivated by the other, and the withdrawal is counted once.
func TestTwoWithdrawingFlags(t *testing.T) {
	f := newRaceFixture(t)
	id := f.newTrace()
	f.merge(id)
	f.st.at(f.afterRead(id), func() {
		f.flag(id, "malicious", 9, "quarantined", t.Errorf)
	})
	f.flag(id, "unsafe", 4, "quarantined", t.Fatalf)
	f.withdrawnOnce(id)
}

// TestTwoWithdrawingFlagsLate: as TestTwoWithdrawingFlags, but the other flag withdraws
// the trace after this one has read it merged a second time and begun its withdrawal (as
// a flag on another host would, where nothing in this process orders them): the status
// change is made only while the trace is merged, so it does not reactivate the trace.
func TestTwoWithdrawingFlagsLate(t *testing.T) {
	f := newRaceFixture(t)
	id := f.newTrace()
	f.merge(id)
	merged := trace.MergedNamespace(trace.DefaultTenant)
	f.st.at(func(after bool, op, ns string, _ []byte) bool { return !after && op == "delete" && ns == merged }, func() {
		f.flag(id, "malicious", 9, "quarantined", t.Errorf)
	})
	f.flag(id, "unsafe", 4, "quarantined", t.Fatalf)
	f.withdrawnOnce(id)
}

// TestTwoQuarantiningFlags: two flags that each call for quarantine, on a trace both read
// active, quarantine it once, and the stats say so.
func TestTwoQuarantiningFlags(t *testing.T) {
	f := newRaceFixture(t)
	id := f.newTrace()
	f.st.at(f.afterRead(id), func() {
		if code, out := f.call(context.Background(), "POST", "/v1/governance/flag", f.flagBody(id, "malicious", 9)); code != 201 {
			t.Errorf("concurrent flag: %d %v", code, out)
		}
	})
	if code, out := f.call(context.Background(), "POST", "/v1/governance/flag", f.flagBody(id, "jailbreak", 8)); code != 201 || out["status"] != "quarantined" {
		t.Fatalf("flag: %d %v", code, out)
	}
	f.check(id, trace.StatusQuarantined)
	if st := f.sessionStats(); st.Quarantined != 1 || st.ByFlag["malicious"] != 1 || st.ByFlag["jailbreak"] != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestStatsWhenClientLeaves: a flag or a merge that was written is counted in the
// governance stats even if its client went away right after the write.
func TestStatsWhenClientLeaves(t *testing.T) {
	f := newRaceFixture(t)
	sessionNS := trace.SessionNamespace(trace.DefaultTenant, f.session)
	for _, tc := range []struct {
		name, path, body string
		// ns is where the request's last write goes.
		ns string
	}{
		{"flag", "/v1/governance/flag", "flag", sessionNS},
		{"merge", "/v1/traces/%s/merge", "", trace.MergedNamespace(trace.DefaultTenant)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := f.newTrace()
			before := f.sessionStats()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// The client goes away once the trace's write is done.
			f.st.at(func(after bool, op, ns string, key []byte) bool {
				return after && op == "batch" && ns == tc.ns && bytes.Contains(key, []byte(id))
			}, cancel)
			path, body := strings.Replace(tc.path, "%s", id, 1), ""
			if tc.body != "" {
				body = f.flagBody(id, "anomaly", 3)
			}
			f.call(ctx, "POST", path, body)
			after := f.sessionStats()
			if tc.name == "flag" && after.ByFlag["anomaly"] != before.ByFlag["anomaly"]+1 {
				t.Fatalf("flag not counted: %+v then %+v", before, after)
			}
			if tc.name == "merge" && after.MergesAllowed != before.MergesAllowed+1 {
				t.Fatalf("merge not counted: %+v then %+v", before, after)
			}
		})
	}
}

// TestMergeRacingFlag: a flag that lands between a merge's read of the trace and its
// status change is seen by the merge: a flag the policy refuses merges for makes the
// merge answer 409 naming it, and the trace stays out of the shared record. The merge
// used to decide on the record it read and merge the flagged trace.
func TestMergeRacingFlag(t *testing.T) {
	f := newRaceFixture(t)
	id := f.newTrace()
	f.st.at(f.afterRead(id), func() {
		if code, out := f.call(context.Background(), "POST", "/v1/governance/flag", f.flagBody(id, "jailbreak", 3)); code != 201 || out["status"] != "active" {
			t.Errorf("concurrent flag: %d %v", code, out)
		}
	})
	code, out := f.call(context.Background(), "POST", "/v1/traces/"+id+"/merge", "")
	if code != 409 || !strings.Contains(fmt.Sprint(out["reasons"]), "jailbreak") {
		t.Fatalf("merge: %d %v", code, out)
	}
	f.check(id, trace.StatusActive)
	if st := f.sessionStats(); st.MergesAllowed != 0 || st.MergesRefused != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestTwoMergesRacing: of two merges that both start on an active trace, one merges it
// and the other, which waits for it on this host, answers 409 (already merged); the merge
// is counted once. (Merges on two hosts are decided again on the record the status change
// extends, as a flag landing meanwhile is: TestFlagRacingMerge.)
func TestTwoMergesRacing(t *testing.T) {
	f := newRaceFixture(t)
	id := f.newTrace()
	other := make(chan int, 1)
	f.st.at(f.afterRead(id), func() {
		go func() {
			code, _ := f.call(context.Background(), "POST", "/v1/traces/"+id+"/merge", "")
			other <- code
		}()
	})
	code, out := f.call(context.Background(), "POST", "/v1/traces/"+id+"/merge", "")
	if codes := []int{code, <-other}; !slices.Equal(codes, []int{200, 409}) {
		t.Fatalf("merges answered %v, want 200 then 409: %v", codes, out)
	}
	f.check(id, trace.StatusMerged)
	if st := f.sessionStats(); st.MergesAllowed != 1 || st.MergesRefused != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestMergeDuringMerge: a merge of a trace that another merge of this host is copying
// into the shared record waits for it, then answers 409 (already merged); the first
// answers 200 and the merge is counted once (both used to answer 200 and count it). The
// first's copy finishes though its client has gone: a copy cut short by the client left
// the trace merged but not in the shared record.
func TestMergeDuringMerge(t *testing.T) {
	f := newRaceFixture(t)
	id := f.newTrace()
	merged := trace.MergedNamespace(trace.DefaultTenant)
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan int, 1)
	f.st.at(func(after bool, op, ns string, _ []byte) bool { return !after && op == "batch" && ns == merged }, func() {
		go func() {
			code, out := f.call(context.Background(), "POST", "/v1/traces/"+id+"/merge", "")
			if d, _ := out["detail"].(string); code != 409 || !strings.Contains(d, "is already merged") || strings.Contains(d, "policy") || out["reasons"] != nil {
				t.Errorf("merge during the merge: %d %v", code, out)
			}
			second <- code
		}()
		// The second merge waits for the first.
		for waiting, deadline := false, time.Now().Add(10*time.Second); !waiting; {
			waiting = f.srv.merging.Refs(id) == 2
			if !waiting && time.Now().After(deadline) {
				t.Error("the second merge did not wait for the first")
				break
			}
			time.Sleep(time.Millisecond)
		}
		cancel() // the first's client goes away before the copy
	})
	f.call(ctx, "POST", "/v1/traces/"+id+"/merge", "")
	<-second
	f.check(id, trace.StatusMerged)
	if in, err := f.traces.InMerged(context.Background(), id); err != nil || !in {
		t.Fatalf("trace merged but not in the shared record: %v %v", in, err)
	}
	if st := f.sessionStats(); st.MergesAllowed != 1 || st.MergesRefused != 0 {
		t.Fatalf("stats: %+v; want one merge allowed and none refused", st)
	}
	if n := f.srv.merging.Refs(id); n != 0 {
		t.Fatalf("the trace's merge lock is still held or waited for by %d", n)
	}
}

// TestMergeCompletesOneCutShortSinceItsRead: a merge that read the trace active, then finds
// it merged (by a merge whose status change landed but whose copy never did: storage lost
// before the change was acknowledged), completes the copy and answers 200, instead of 409
// "already merged" with the trace left out of the shared record for good.
func TestMergeCompletesOneCutShortSinceItsRead(t *testing.T) {
	f := newRaceFixture(t)
	id := f.newTrace()
	f.st.at(f.afterRead(id), func() {
		if _, _, err := f.traces.Apply(context.Background(), id, "api", trace.Update{Status: trace.StatusMerged, Reason: "merge cut short"}); err != nil {
			t.Error(err)
		}
	})
	f.merge(id)
	f.check(id, trace.StatusMerged)
	if in, err := f.traces.InMerged(context.Background(), id); err != nil || !in {
		t.Fatalf("trace merged but not in the shared record: %v %v", in, err)
	}
}
