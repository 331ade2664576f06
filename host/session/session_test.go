package session

import (
	"context"
	"crypto/rand"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/sdk/storage"
	"github.com/limitgraph/limit/sdk/storage/memstore"
)

// countingStore counts Gets and can hold the next one after it has read, so a test can
// write while a read is in flight.
type countingStore struct {
	storage.Storage
	gets atomic.Int64
	puts atomic.Int64
	// hold, when set, receives once the held Get has read; the Get returns when release
	// is closed.
	hold    chan struct{}
	release chan struct{}
	// beforePut, when set, runs once before the next Put writes.
	beforePut func()
	// putErr, when set, is returned by the next Put after it has written: a write whose
	// outcome the store could not confirm.
	putErr error
}

func (c *countingStore) Put(ctx context.Context, ns string, key, value []byte) error {
	if f := c.beforePut; f != nil {
		c.beforePut = nil
		f()
	}
	c.puts.Add(1)
	if err := c.Storage.Put(ctx, ns, key, value); err != nil {
		return err
	}
	err := c.putErr
	c.putErr = nil
	return err
}

// CompareAndSwap counts as a put (an update of a record: session.update).
func (c *countingStore) CompareAndSwap(ctx context.Context, req storage.CASRequest) (storage.CASResult, error) {
	c.puts.Add(1)
	return c.Storage.CompareAndSwap(ctx, req)
}

// Batch is a write as Put is (a delete writes its record with its index entry in one).
func (c *countingStore) Batch(ctx context.Context, ns string, ops []storage.Op) error {
	if f := c.beforePut; f != nil {
		c.beforePut = nil
		f()
	}
	c.puts.Add(1)
	if err := c.Storage.Batch(ctx, ns, ops); err != nil {
		return err
	}
	err := c.putErr
	c.putErr = nil
	return err
}

func (c *countingStore) Get(ctx context.Context, ns string, key []byte) ([]byte, bool, error) {
	c.gets.Add(1)
	v, ok, err := c.Storage.Get(ctx, ns, key)
	if h := c.hold; h != nil {
		c.hold = nil
		h <- struct{}{}
		<-c.release
	}
	return v, ok, err
}

func newManager(t *testing.T, st storage.Storage) *Manager {
	return NewManager(Options{Store: st, DataDir: t.TempDir(), Policies: []string{"default"}, DefaultPolicy: "default"})
}

func TestCachedLookups(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{Storage: memstore.New()}
	m := newManager(t, st)
	s, err := m.Create(ctx, CreateRequest{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		got, err := m.Active(ctx, s.ID)
		if err != nil || got.ID != s.ID || got.Name != "a" {
			t.Fatalf("Active: %+v %v", got, err)
		}
	}
	if n := st.gets.Load(); n != 0 {
		t.Fatalf("a session this host wrote was read from storage %d times", n)
	}
	// Each Get returns its own copy.
	got, _ := m.Get(ctx, s.ID)
	got.Name = "changed"
	if again, _ := m.Get(ctx, s.ID); again.Name != "a" {
		t.Fatalf("a caller's change reached the cache: %q", again.Name)
	}
	// Nor a change made through a slice of the copy.
	withRunner := *got
	withRunner.ID, withRunner.Runners = "01ARZ3NDEKTSV4RRFFQ69G5FAW", []string{"python"}
	m.remember(withRunner.ID, &withRunner, 0, true)
	got, _ = m.Get(ctx, withRunner.ID)
	got.Runners[0] = "changed"
	if again, _ := m.Get(ctx, withRunner.ID); again.Runners[0] != "python" {
		t.Fatalf("a caller's change to the runners reached the cache: %q", again.Runners)
	}
	// Another manager on the same storage (a restarted host) reads once, then caches.
	m2 := newManager(t, st)
	for range 3 {
		if _, err := m2.Active(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
	}
	if n := st.gets.Load(); n != 1 {
		t.Fatalf("storage reads = %d, want 1", n)
	}
	if _, err := m2.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Active(ctx, s.ID); !errors.Is(err, ErrDeleted) {
		t.Fatalf("Active after Delete: %v, want ErrDeleted", err)
	}
	if _, err := m2.Get(ctx, "01ARZ3NDEKTSV4RRFFQ69G5FAV"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
}

// TestCacheNeverKeepsAReplacedRecord: a read that returned a record a concurrent write
// replaced must not put that record in the cache.
func TestCacheNeverKeepsAReplacedRecord(t *testing.T) {
	ctx := context.Background()
	st, m, s := cacheFixture(t)
	read := heldRead(st, m, s.ID) // reads the active record, then waits
	if _, err := m.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	close(st.release)
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	if _, err := m.Active(ctx, s.ID); !errors.Is(err, ErrDeleted) {
		t.Fatalf("Active after Delete raced a read: %v, want ErrDeleted", err)
	}
}

// TestCacheNeverKeepsARecordReadDuringAWrite: a read that begins while a write is in
// flight (the cache entry already dropped, the store not yet written) and returns the old
// record after the write has landed and been cached must not replace it in the cache:
// an execution would then find a deleted session active and start its runner.
func TestCacheNeverKeepsARecordReadDuringAWrite(t *testing.T) {
	ctx := context.Background()
	st, m, s := cacheFixture(t)
	var read <-chan error
	st.beforePut = func() {
		// The delete has dropped the cache entry and is about to write: a read starts
		// now, reads the active record, and is held until the delete has returned.
		read = heldRead(st, m, s.ID)
	}
	if _, err := m.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	close(st.release)
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	if _, err := m.Active(ctx, s.ID); !errors.Is(err, ErrDeleted) {
		t.Fatalf("Active after a Delete that raced a read: %v, want ErrDeleted", err)
	}
}

// TestCacheNeverKeepsARecordReadDuringAFailedWrite: a write that fails may have landed,
// so the next read must go to the store; a read that ran while that write was in flight
// and cached the record it replaces must not be served instead. Otherwise a delete that
// failed after landing leaves its session active here (its runner started again) while
// stored deleted.
func TestCacheNeverKeepsARecordReadDuringAFailedWrite(t *testing.T) {
	ctx := context.Background()
	st, m, s := cacheFixture(t)
	st.putErr = errors.New("storage unavailable after the write")
	st.beforePut = func() {
		// The delete has dropped the cache entry and is about to write: a read runs to
		// its end now and returns the active record.
		if got, err := m.Get(ctx, s.ID); err != nil || got.State != StateActive {
			t.Errorf("the read during the write: %+v %v", got, err)
		}
	}
	if _, err := m.Delete(ctx, s.ID); err == nil {
		t.Fatal("Delete succeeded though its write failed")
	}
	// The write landed: the store says deleted, and so must the next read.
	if _, err := m.Active(ctx, s.ID); !errors.Is(err, ErrDeleted) {
		t.Fatalf("Active after a failed Delete that landed: %v, want ErrDeleted (the store's record)", err)
	}
}

// cacheFixture returns a store holding an active session, written by another manager,
// and a manager on that store whose cache is empty.
func cacheFixture(t *testing.T) (*countingStore, *Manager, *Session) {
	t.Helper()
	st := &countingStore{Storage: memstore.New()}
	s, err := newManager(t, st).Create(context.Background(), CreateRequest{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	return st, newManager(t, st), s
}

// heldRead starts m.Get of session id and returns once it has read the store; the read
// then waits until st.release is closed. Its outcome comes on the channel: nil if it saw
// the session active.
func heldRead(st *countingStore, m *Manager, id string) <-chan error {
	st.hold, st.release = make(chan struct{}), make(chan struct{})
	held := st.hold
	read := make(chan error, 1)
	go func() {
		got, err := m.Get(context.Background(), id)
		if err == nil && got.State != StateActive {
			err = errors.New("the held read saw " + got.State)
		}
		read <- err
	}()
	<-held
	return read
}

// TestCreateRefusesTimeoutOverMax: a session's limits.timeout_ms is bounded like a
// request's (an hour); one above was stored, and every execution of the session that
// named no timeout then failed.
func TestCreateRefusesTimeoutOverMax(t *testing.T) {
	m := newManager(t, memstore.New())
	for _, ms := range []uint64{MaxTimeoutMS + 1, math.MaxUint64} {
		if s, err := m.Create(context.Background(), CreateRequest{Limits: Limits{TimeoutMS: ms}}); !errors.Is(err, ErrInvalid) {
			t.Errorf("limits.timeout_ms %d: %+v, %v; want ErrInvalid", ms, s, err)
		}
	}
	if _, err := m.Create(context.Background(), CreateRequest{Limits: Limits{TimeoutMS: MaxTimeoutMS}}); err != nil {
		t.Errorf("limits.timeout_ms %d (an hour): %v", uint64(MaxTimeoutMS), err)
	}
}

// TestCreateBoundsMemory: limits.memory_bytes, when set, is between 64 MiB and 1 TiB; a
// session of 1 byte was stored, and every execution of it answered 500.
func TestCreateBoundsMemory(t *testing.T) {
	m := newManager(t, memstore.New())
	for _, b := range []uint64{1, MinMemoryBytes - 1, MaxMemoryBytes + 1, math.MaxUint64} {
		if s, err := m.Create(context.Background(), CreateRequest{Limits: Limits{MemoryBytes: b}}); !errors.Is(err, ErrInvalid) {
			t.Errorf("limits.memory_bytes %d: %+v, %v; want ErrInvalid", b, s, err)
		}
	}
	for _, b := range []uint64{0, MinMemoryBytes, MaxMemoryBytes} {
		if _, err := m.Create(context.Background(), CreateRequest{Limits: Limits{MemoryBytes: b}}); err != nil {
			t.Errorf("limits.memory_bytes %d: %v", b, err)
		}
	}
}

// TestCreateBoundsDisk: limits.max_disk_bytes, when set, is between 8 MiB and 1 TiB, and
// is kept in the record and passed on to the runners.
func TestCreateBoundsDisk(t *testing.T) {
	m := newManager(t, memstore.New())
	for _, b := range []uint64{1, MinDiskBytes - 1, MaxDiskBytes + 1, math.MaxUint64} {
		if s, err := m.Create(context.Background(), CreateRequest{Limits: Limits{MaxDiskBytes: b}}); !errors.Is(err, ErrInvalid) || (err != nil && !strings.Contains(err.Error(), "limits.max_disk_bytes")) {
			t.Errorf("limits.max_disk_bytes %d: %+v, %v; want ErrInvalid naming the field", b, s, err)
		}
	}
	for _, b := range []uint64{0, MinDiskBytes, MaxDiskBytes} {
		s, err := m.Create(context.Background(), CreateRequest{Limits: Limits{MaxDiskBytes: b}})
		if err != nil {
			t.Errorf("limits.max_disk_bytes %d: %v", b, err)
			continue
		}
		got, err := m.Get(context.Background(), s.ID)
		if err != nil || got.Limits.MaxDiskBytes != b || got.Limits.RunnerLimits().MaxDiskBytes != b {
			t.Errorf("limits.max_disk_bytes %d: stored %+v, %v", b, got, err)
		}
	}
}

// TestUnknownRunnerOnAHostWithoutRunners: a host with no runner block says so, rather
// than listing an empty "configured: ".
func TestUnknownRunnerOnAHostWithoutRunners(t *testing.T) {
	m := newManager(t, memstore.New())
	_, err := m.Create(context.Background(), CreateRequest{Runners: []string{"python"}})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `runner "python" is not configured on this host, which has no runners`) {
		t.Fatalf("a session naming a runner on a host without any: %v", err)
	}
}

// TestOwners: a session keeps the owner it was created for, in its record; a record
// stored before owners is an operators' session (no owner); a malformed owner is refused;
// List with an owner gives full pages of that owner's sessions, with the right next token.
func TestOwners(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	m := newManager(t, st)
	var alice []string
	for i := range 7 {
		owner := "bob"
		if i%3 != 1 {
			owner = "alice"
		}
		s, err := m.Create(ctx, CreateRequest{Name: "s", Owner: owner})
		if err != nil || s.Owner != owner {
			t.Fatalf("Create: %+v %v", s, err)
		}
		if owner == "alice" {
			alice = append(alice, s.ID)
		}
	}
	// Another manager reads the records from storage, not from its cache.
	got, err := newManager(t, st).Get(ctx, alice[0])
	if err != nil || got.Owner != "alice" {
		t.Fatalf("stored owner: %+v %v", got, err)
	}
	var ids []string
	token := ""
	for {
		page, next, err := m.List(ctx, 2, token, Filter{Owner: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		if next != "" && len(page) != 2 {
			t.Fatalf("a page before the last has %d sessions", len(page))
		}
		for _, s := range page {
			if s.Owner != "alice" {
				t.Fatalf("alice's listing holds a session of %q", s.Owner)
			}
			ids = append(ids, s.ID)
		}
		if next == "" {
			break
		}
		token = next
	}
	if strings.Join(ids, ",") != strings.Join(alice, ",") {
		t.Fatalf("alice's sessions listed %v, want %v", ids, alice)
	}
	if all, _, err := m.List(ctx, 50, "", Filter{}); err != nil || len(all) != 7 {
		t.Fatalf("unfiltered listing: %d %v", len(all), err)
	}
	// A record from before owners.
	old := NewID()
	if err := st.Put(ctx, IndexNamespace(DefaultTenant), []byte(sessionPrefix+old), []byte(`{"id":"`+old+`","tenant":"default","state":"active","max_concurrency":1}`)); err != nil {
		t.Fatal(err)
	}
	if s, err := m.Get(ctx, old); err != nil || s.Owner != "" {
		t.Fatalf("old record: %+v %v", s, err)
	}
	for _, bad := range []string{"Alice", "-x", "a b", strings.Repeat("a", 65)} {
		if _, err := m.Create(ctx, CreateRequest{Owner: bad}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "owner") {
			t.Errorf("owner %q: %v", bad, err)
		}
	}
}

// TestCreateNameLength: a name's limit is 128 characters, whatever bytes they take: 128
// of "é" (256 bytes) or "日" (384) are taken, 129 are refused with their count.
func TestCreateNameLength(t *testing.T) {
	m := newManager(t, memstore.New())
	for _, c := range []string{"a", "é", "日", "🙂"} {
		name := strings.Repeat(c, MaxNameLength)
		if s, err := m.Create(context.Background(), CreateRequest{Name: name}); err != nil || s.Name != name {
			t.Errorf("%d × %q: %v", MaxNameLength, c, err)
		}
		_, err := m.Create(context.Background(), CreateRequest{Name: name + c})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "name is 129 characters, the limit is 128") {
			t.Errorf("%d × %q: %v", MaxNameLength+1, c, err)
		}
	}
}

// scanCounter counts the records Scans hand back.
type scanCounter struct {
	storage.Storage
	scanned atomic.Int64
}

func (c *scanCounter) Scan(ctx context.Context, req storage.ScanRequest) (storage.ScanResult, error) {
	res, err := c.Storage.Scan(ctx, req)
	c.scanned.Add(int64(len(res.Items)))
	return res, err
}

// TestOwnerIndex: once the owner index is made (IndexOwners), a user's listing reads that
// user's sessions only, not every user's; records an older limitd stored (without their
// entries) get them from IndexOwners: all at its first run, then, at each start, those
// stored since a little before the last; deleted sessions are listed only when asked for.
func TestOwnerIndex(t *testing.T) {
	ctx := context.Background()
	st := &scanCounter{Storage: memstore.New()}
	m := newManager(t, st)
	// oldRecord stores a session as an older limitd did: with an owner, no index entry.
	oldRecord := func(owner string, at time.Time) string {
		t.Helper()
		id := ulid.MustNew(ulid.Timestamp(at), rand.Reader).String()
		rec := `{"id":"` + id + `","tenant":"default","state":"active","max_concurrency":1,"owner":"` + owner + `"}`
		if err := st.Put(ctx, IndexNamespace(DefaultTenant), []byte(sessionPrefix+id), []byte(rec)); err != nil {
			t.Fatal(err)
		}
		return id
	}
	// Sessions stored before the upgrade, an hour ago.
	hourAgo := time.Now().Add(-time.Hour)
	var alice []string
	for i := range 3 {
		alice = append(alice, oldRecord("alice", hourAgo.Add(time.Duration(i)*time.Second)))
		if i == 0 {
			for range 200 {
				oldRecord("bob", hourAgo)
			}
		}
	}
	made, err := m.IndexOwners(ctx)
	if err != nil || made != 203 {
		t.Fatalf("IndexOwners made %d entries, want 203: %v", made, err)
	}
	s, err := m.Create(ctx, CreateRequest{Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	alice = append(alice, s.ID)
	if _, err := m.Delete(ctx, alice[1]); err != nil {
		t.Fatal(err)
	}

	list := func(m *Manager, f Filter) []string {
		t.Helper()
		var ids []string
		token := ""
		for {
			page, next, err := m.List(ctx, 2, token, f)
			if err != nil {
				t.Fatal(err)
			}
			if next != "" && len(page) != 2 {
				t.Fatalf("a page before the last has %d sessions", len(page))
			}
			for _, s := range page {
				if s.Owner != f.Owner {
					t.Fatalf("%s's listing holds a session of %q", f.Owner, s.Owner)
				}
				ids = append(ids, s.ID)
			}
			if next == "" {
				return ids
			}
			token = next
		}
	}
	before := st.scanned.Load()
	got := list(m, Filter{Owner: "alice"})
	if want := []string{alice[0], alice[2], alice[3]}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("alice's active sessions: %v, want %v", got, want)
	}
	if n := st.scanned.Load() - before; n > 10 {
		t.Errorf("listing alice's 4 sessions read %d records (bob has 200)", n)
	}
	if got := list(m, Filter{Owner: "alice", WithDeleted: true}); strings.Join(got, ",") != strings.Join(alice, ",") {
		t.Fatalf("alice's sessions, deleted included: %v, want %v", got, alice)
	}
	if got := list(m, Filter{Owner: "carol"}); len(got) != 0 {
		t.Fatalf("carol has no sessions: %v", got)
	}

	// An older limitd on the same storage (a rollback, or an older host during a rolling
	// upgrade) stores a session of alice's; the next start indexes it, reading only the
	// sessions stored since a little before its last run, not the 200 of an hour ago.
	alice = append(alice, oldRecord("alice", time.Now().Add(time.Second)))
	again := newManager(t, st)
	before = st.scanned.Load()
	if _, err := again.IndexOwners(ctx); err != nil {
		t.Fatalf("IndexOwners again: %v", err)
	}
	if n := st.scanned.Load() - before; n > 10 {
		t.Errorf("IndexOwners at the next start read %d records", n)
	}
	before = st.scanned.Load()
	if got := list(again, Filter{Owner: "alice"}); strings.Join(got, ",") != strings.Join([]string{alice[0], alice[2], alice[3], alice[4]}, ",") {
		t.Fatalf("alice's sessions after a restart: %v", got)
	}
	if n := st.scanned.Load() - before; n > 10 {
		t.Errorf("after a restart, listing alice's sessions read %d records", n)
	}
	// Without the index (IndexOwners not run or failed), the listing reads every record,
	// with the same answer.
	if got := list(newManager(t, st), Filter{Owner: "alice"}); len(got) != 4 {
		t.Fatalf("alice's sessions read without the index: %v", got)
	}
}

// TestRunnersStarted: the first process a limitd starts for a session's runner is
// Replaced (state_reset) when an earlier limitd had started one, as the record says; a
// session's first process ever is not; a record stored before the record said so (an
// older limitd's) counts every runner as started, and stays so when rewritten.
func TestRunnersStarted(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	note := func(m *Manager, id, name string) bool {
		t.Helper()
		h := &plugins.Handle{Fresh: true}
		g := m.enter(id)
		defer m.leave(id, g)
		g.rw.RLock()
		defer g.rw.RUnlock()
		m.noteStarted(ctx, g, id, name, h)
		return h.Replaced
	}
	m := newManager(t, st)
	s, err := m.Create(ctx, CreateRequest{Name: "new"})
	if err != nil {
		t.Fatal(err)
	}
	if note(m, s.ID, "python") || note(m, s.ID, "python") {
		t.Errorf("a session's first processes on the limitd that created it are Replaced")
	}
	restarted := newManager(t, st)
	if !note(restarted, s.ID, "python") {
		t.Errorf("the first python process after a restart is not Replaced")
	}
	if note(restarted, s.ID, "python") || note(restarted, s.ID, "llm") {
		t.Errorf("a second process after the restart, or a runner never started, is Replaced")
	}

	old := NewID()
	rec := `{"id":"` + old + `","tenant":"default","state":"active","max_concurrency":1}`
	if err := st.Put(ctx, IndexNamespace(DefaultTenant), []byte(sessionPrefix+old), []byte(rec)); err != nil {
		t.Fatal(err)
	}
	m = newManager(t, st)
	if !note(m, old, "python") || note(m, old, "python") {
		t.Errorf("an older limitd's session: its first process here must be Replaced, its second not")
	}
	if _, err := m.Delete(ctx, old); err != nil { // rewrites the record
		t.Fatal(err)
	}
	b, _, err := st.Get(ctx, IndexNamespace(DefaultTenant), []byte(sessionPrefix+old))
	if err != nil || strings.Contains(string(b), "runners_started") {
		t.Errorf("an older limitd's record rewritten came to say which runners started: %s %v", b, err)
	}
}

// TestOtherNodesSessions: a host does not delete (or run) a session another node runs:
// OtherNodeError names that node; DeleteOwnerGone does, for a node gone for good; and a
// host does not cache another node's sessions, so it sees what that host writes.
func TestOtherNodesSessions(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	newOn := func(node string) *Manager {
		return NewManager(Options{Store: st, DataDir: t.TempDir(), Policies: []string{"default"}, DefaultPolicy: "default", Node: node})
	}
	a, b := newOn("node-a"), newOn("node-b")
	s, err := a.Create(ctx, CreateRequest{Name: "on a"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get(ctx, s.ID); err != nil || got.OwnerNode != "node-a" {
		t.Fatalf("b reads a's session: %+v %v", got, err)
	}
	var other *OtherNodeError
	if _, err := b.Delete(ctx, s.ID); !errors.As(err, &other) || other.Node != "node-a" || !strings.Contains(err.Error(), "node-a") {
		t.Fatalf("b deleting a's session: %v", err)
	}
	if got, _ := a.Get(ctx, s.ID); got.State != StateActive {
		t.Fatalf("a's session after b's refused delete: %s", got.State)
	}
	// a deletes it: b, which read it before, sees the delete (it kept no copy).
	if _, err := a.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get(ctx, s.ID); err != nil || got.State != StateDeleted {
		t.Fatalf("b after a's delete: %+v %v", got, err)
	}
	// A session of a node gone for good.
	s2, err := a.Create(ctx, CreateRequest{Name: "orphan"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.DeleteOwnerGone(ctx, s2.ID); err != nil || got.State != StateDeleted {
		t.Fatalf("DeleteOwnerGone: %+v %v", got, err)
	}
	if got, err := newOn("node-a").Get(ctx, s2.ID); err != nil || got.State != StateDeleted {
		t.Fatalf("the orphan as stored: %+v %v", got, err)
	}
}

// TestOwnerGoneWhileOwnerLives: an operator's DeleteOwnerGone through another host, of a
// session whose host is in fact alive, is not undone by that host's next write of the
// record (it used to write its cached, active copy back), and that host stops running
// the session once its cached record is read again (after cacheFor), or at once when it
// next writes the record.
func TestOwnerGoneWhileOwnerLives(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	newOn := func(node string) *Manager {
		return NewManager(Options{Store: st, DataDir: t.TempDir(), Policies: []string{"default"}, DefaultPolicy: "default", Node: node})
	}
	a, b := newOn("node-a"), newOn("node-b")
	s1, err := a.Create(ctx, CreateRequest{Name: "written after"})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := a.Create(ctx, CreateRequest{Name: "read after"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Session{s1, s2} {
		if _, err := a.Active(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := b.DeleteOwnerGone(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
	}
	// a's write (what a runner spent) finds the record deleted: it writes nothing, and a
	// refuses the session from then on.
	if err := a.keepSpent(ctx, s1.ID, "llm", map[string]float64{"session_tokens": 5}); err != nil {
		t.Fatal(err)
	}
	if got, err := newOn("node-c").Get(ctx, s1.ID); err != nil || got.State != StateDeleted || got.RunnerSpent != nil {
		t.Fatalf("the record after the owner's write: %+v %v", got, err)
	}
	if _, err := a.Active(ctx, s1.ID); !errors.Is(err, ErrDeleted) {
		t.Fatalf("the owner runs the session after its write found it deleted: %v", err)
	}
	// Without a write, the owner sees it once its cached record is old.
	if _, err := a.Active(ctx, s2.ID); err != nil {
		t.Fatalf("within cacheFor the owner's cached record is used: %v", err)
	}
	a.cacheFor = 0
	if _, err := a.Active(ctx, s2.ID); !errors.Is(err, ErrDeleted) {
		t.Fatalf("the owner runs the session after its cached record expired: %v", err)
	}
}

// TestOwnerGoneFilesRemoved: on the host that runs a session another host marked deleted
// (owner_gone), the next execution's request for the runner is refused and removes the
// session's files there, as that host's own delete would have.
func TestOwnerGoneFilesRemoved(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	a := NewManager(Options{Store: st, DataDir: t.TempDir(), Policies: []string{"default"}, DefaultPolicy: "default", Node: "node-a",
		Runners: plugins.NewRunners(map[string]plugins.Spec{"echo": {Name: "echo"}}, nil)})
	b := NewManager(Options{Store: st, DataDir: t.TempDir(), Policies: []string{"default"}, DefaultPolicy: "default", Node: "node-b"})
	s, err := a.Create(ctx, CreateRequest{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	// As after an execution on a: its work dir, and a process started for it.
	if err := os.MkdirAll(a.WorkDir(s.ID), 0o700); err != nil {
		t.Fatal(err)
	}
	a.started[s.ID] = []string{"echo"}
	if _, err := b.DeleteOwnerGone(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	a.cacheFor = 0
	if _, err := a.Runner(ctx, s, "echo"); !errors.Is(err, ErrDeleted) {
		t.Fatalf("Runner of a session deleted through another host: %v, want ErrDeleted", err)
	}
	if _, err := os.Stat(filepath.Dir(a.WorkDir(s.ID))); !os.IsNotExist(err) {
		t.Fatalf("the session's files on its host: %v", err)
	}
	if got, err := a.Get(ctx, s.ID); err != nil || got.State != StateDeleted {
		t.Fatalf("the record: %+v %v", got, err)
	}
}
