// Package session keeps the host's sessions: their records in storage, their private
// working directories, the bound on simultaneous executions, and the hand-off to each
// session's own runner processes.
package session

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/oklog/ulid/v2"

	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/host/plugins"
	"github.com/limitgraph/limit/internal/clip"
	"github.com/limitgraph/limit/sdk/runner"
	"github.com/limitgraph/limit/sdk/storage"
)

// DefaultTenant is the tenant of every session until tenants and tokens arrive.
const DefaultTenant = "default"

// Session states.
const (
	StateActive  = "active"
	StateDeleted = "deleted"
)

// Bounds of a session's settings.
const (
	DefaultMaxConcurrency = 4
	MaxMaxConcurrency     = 1024
	// MaxNameLength bounds a session's name, in characters (Unicode code points).
	MaxNameLength = 128
	// MaxTimeoutMS bounds limits.timeout_ms, as it bounds an execution request's
	// timeout_ms: an hour.
	MaxTimeoutMS = 60 * 60 * 1000
	// DefaultTimeoutMS is an execution's timeout when neither it, its session nor its
	// runner gives one.
	DefaultTimeoutMS = 60 * 1000
	// MinMemoryBytes and MaxMemoryBytes bound limits.memory_bytes when it is set: under
	// 64 MiB no interpreter starts in a sandbox (a session of 1 byte answered every
	// execution 500), and over 1 TiB is no limit but a typo.
	MinMemoryBytes = 64 << 20
	MaxMemoryBytes = 1 << 40
	// MinDiskBytes and MaxDiskBytes bound limits.max_disk_bytes when it is set: under
	// 8 MiB a filesystem's own metadata takes most of it, and over 1 TiB is no limit but
	// a typo.
	MinDiskBytes = 8 << 20
	MaxDiskBytes = 1 << 40
)

// Errors the API maps to statuses.
var (
	ErrNotFound = errors.New("session not found")
	ErrInvalid  = errors.New("invalid request")
	ErrDeleted  = errors.New("session is deleted")
	// ErrBusy means every execution slot of the session stayed taken until the request's
	// deadline.
	ErrBusy = errors.New("session is at its max_concurrency")
)

// OtherNodeError is the error of a request that would run or delete, on this host, a
// session another host (node) runs: its runner processes, files and execution slots are
// that host's, and a second host running it would split its state in two.
type OtherNodeError struct {
	SessionID, Node string
}

func (e *OtherNodeError) Error() string {
	return fmt.Sprintf("session %s is run by the host of node %s, not this one: send its executions and its delete to that host (its processes, files and execution slots are there)", e.SessionID, e.Node)
}

// ownedElsewhere returns an OtherNodeError when s is run by another node than this host's.
func (m *Manager) ownedElsewhere(s *Session) error {
	if s.OwnerNode != "" && s.OwnerNode != m.opts.Node {
		return &OtherNodeError{SessionID: s.ID, Node: s.OwnerNode}
	}
	return nil
}

// Limits bound a session's executions; zero means the runner's default.
type Limits struct {
	TimeoutMS      uint64 `json:"timeout_ms,omitempty"`
	MemoryBytes    uint64 `json:"memory_bytes,omitempty"`
	CPUMillis      uint64 `json:"cpu_millis,omitempty"`
	MaxProcesses   uint32 `json:"max_processes,omitempty"`
	MaxOutputBytes uint64 `json:"max_output_bytes,omitempty"`
	MaxFileBytes   uint64 `json:"max_file_bytes,omitempty"`
	// MaxDiskBytes bounds the session's files in all (at least MinDiskBytes).
	MaxDiskBytes uint64 `json:"max_disk_bytes,omitempty"`
}

// RunnerLimits converts to the runner protocol's limits.
func (l Limits) RunnerLimits() runner.Limits {
	return runner.Limits{
		Timeout: time.Duration(l.TimeoutMS) * time.Millisecond, MemoryBytes: l.MemoryBytes, CPUMillis: l.CPUMillis,
		MaxProcesses: l.MaxProcesses, MaxOutputBytes: l.MaxOutputBytes, MaxFileBytes: l.MaxFileBytes,
		MaxDiskBytes: l.MaxDiskBytes,
	}
}

// Session is a session's record.
type Session struct {
	ID             string    `json:"id"`
	Tenant         string    `json:"tenant"`
	Name           string    `json:"name"`
	MaxConcurrency int       `json:"max_concurrency"`
	AllowNetwork   bool      `json:"allow_network"`
	Policy         string    `json:"policy"`
	Runners        []string  `json:"runners"`
	Limits         Limits    `json:"limits"`
	CreatedAt      time.Time `json:"created_at"`
	State          string    `json:"state"`
	DeletedAt      time.Time `json:"deleted_at,omitzero"`
	// OwnerNode is the host node that runs the session's processes.
	OwnerNode string `json:"owner_node"`
	// Owner is the user the session belongs to (a user name of api.token_file): the user
	// whose token created it, or whom an operator created it for. Only that user's tokens
	// and operators' reach the session and its traces. "" (a record from before owners
	// included) is a session of the operators', which no user token reaches.
	Owner string `json:"owner,omitempty"`
	// RunnerSpent is what the session has spent with each runner, by runner name, as the
	// runner reported it in its results' usage extras under keys that start with
	// runner.SpentPrefix, the largest figure of each key: a process opened for the session
	// starts from it (runner.Session.Spent), so that a per-session budget outlives the
	// process. The API shows it as "spent" (what a session has used of a runner's budget:
	// {"llm": {"session_tokens": 341, "session_cost_usd": 0.0021}}); the stored record
	// keeps it as "runner_spent" (see record).
	RunnerSpent map[string]map[string]float64 `json:"spent,omitempty"`
	// runnersStarted names the runners that have had a process for the session, in any
	// limitd (stored as runners_started, see record; not shown): a process started for one
	// of them by a limitd that has not yet started one is Replaced, as the session's
	// runner state was lost with the last limitd. startedUnknown marks a record stored
	// before runners_started was (by an older limitd): every runner counts as started.
	runnersStarted []string
	startedUnknown bool
}

// record is a session as stored: its fields, and those the API does not show.
type record struct {
	*Session
	RunnerSpent map[string]map[string]float64 `json:"runner_spent,omitempty"`
	// RunnersStarted is always written (an empty list included); a record without it is
	// an older limitd's.
	RunnersStarted *[]string `json:"runners_started,omitempty"`
}

// CreateRequest is what a client may set on a new session.
type CreateRequest struct {
	Name           string   `json:"name"`
	MaxConcurrency *int     `json:"max_concurrency"`
	AllowNetwork   bool     `json:"allow_network"`
	Policy         string   `json:"policy"`
	Runners        []string `json:"runners"`
	Limits         Limits   `json:"limits"`
	// Owner is the user the session is for (see Session.Owner); "" for the operators'.
	// The API sets it for a user token and lets only an operator's name another user.
	Owner string `json:"owner,omitempty"`
	// ByUser is set by the API for a user's token (not an operator's): the session's
	// limits may then lower but not raise those of the runners it may run, and
	// allow_network needs every one of them to allow it users (see CheckUser).
	ByUser bool `json:"-"`
}

// UserLimitError is a user's request for more than the operator configured: a limit
// above the one a runner's configuration gives every session, a limit of a runner that
// does not report its configured ones, or allow_network on a runner whose block does not
// set allow_user_network. The API answers it 403 (an operator's token may ask it).
type UserLimitError struct {
	// Field names what was asked: "limits.memory_bytes", "allow_network", or an
	// execution's "timeout_ms".
	Field string
	// Runner is the runner whose configuration refuses it.
	Runner string
	// Asked is the value asked and Ceiling the runner's (for a limit it reported).
	Asked, Ceiling uint64
	// Unreported means the runner does not report its configured limits, so none may be
	// set: the host cannot tell a lower one from a higher one.
	Unreported bool
}

func (e *UserLimitError) Error() string {
	switch {
	case e.Field == "allow_network":
		return fmt.Sprintf("allow_network: runner %q does not let a user's session share the host's network (its block sets no allow_user_network = true): leave allow_network out, name only runners that allow it in runners, or ask an operator", e.Runner)
	case e.Unreported:
		return fmt.Sprintf("%s %d: runner %q does not report the limits it is configured with, so a user's session that may run it sets none (the host cannot tell a lower limit from a higher one): leave %s out, name other runners in runners, or ask an operator", e.Field, e.Asked, e.Runner, e.Field)
	}
	return fmt.Sprintf("%s %d is above %d, what runner %q is configured with: a user's session may lower a runner's limits but not raise them; ask an operator for more", e.Field, e.Asked, e.Ceiling, e.Runner)
}

// userLimit is one of a session's limits as CheckUser compares it with a runner's.
type userLimit struct {
	field          string
	asked, ceiling uint64
}

// userLimits pairs each limit of l (in the API's units) with the runner's configured one,
// rl; a ceiling of 0 is none (the runner does not bound it), but for the timeout, which
// is then the host's default.
func userLimits(l Limits, rl runner.Limits) []userLimit {
	timeout := uint64(rl.Timeout / time.Millisecond)
	if timeout == 0 {
		timeout = DefaultTimeoutMS
	}
	return []userLimit{
		{"limits.timeout_ms", l.TimeoutMS, timeout},
		{"limits.memory_bytes", l.MemoryBytes, rl.MemoryBytes},
		{"limits.cpu_millis", l.CPUMillis, rl.CPUMillis},
		{"limits.max_processes", uint64(l.MaxProcesses), uint64(rl.MaxProcesses)},
		{"limits.max_output_bytes", l.MaxOutputBytes, rl.MaxOutputBytes},
		{"limits.max_file_bytes", l.MaxFileBytes, rl.MaxFileBytes},
		{"limits.max_disk_bytes", l.MaxDiskBytes, rl.MaxDiskBytes},
	}
}

// userRunners are the runners a session of names may run: those, or every configured one
// when it names none.
func (m *Manager) userRunners(names []string) []string {
	if len(names) > 0 {
		return names
	}
	return m.runnerNames()
}

// CheckUser reports, as a *UserLimitError, what a user's session (req) asks beyond what the
// operator configured for a runner it may run: a limit above the runner's configured one
// (lower ones are the user's to set), any limit of a runner that does not report its
// configured ones, or allow_network on a runner whose block does not allow it users.
func (m *Manager) CheckUser(req CreateRequest) error {
	if m.opts.Runners == nil {
		return nil // no runner: nothing runs under the limits
	}
	for _, name := range m.userRunners(req.Runners) {
		rl, reported, network := m.opts.Runners.UserBounds(name)
		if req.AllowNetwork && !network {
			return &UserLimitError{Field: "allow_network", Runner: name}
		}
		for _, l := range userLimits(req.Limits, rl) {
			switch {
			case l.asked == 0:
			case !reported:
				return &UserLimitError{Field: l.field, Runner: name, Asked: l.asked, Unreported: true}
			case l.ceiling != 0 && l.asked > l.ceiling:
				return &UserLimitError{Field: l.field, Runner: name, Asked: l.asked, Ceiling: l.ceiling}
			}
		}
	}
	return nil
}

// CheckUserTimeout reports, as a *UserLimitError, an execution's timeout_ms that a user's
// token asks of the named runner beyond the runner's configured timeout (else the host's
// default), as CheckUser does for a session's limits.timeout_ms.
func (m *Manager) CheckUserTimeout(runnerName string, timeoutMS uint64) error {
	if timeoutMS == 0 || m.opts.Runners == nil || !m.opts.Runners.Has(runnerName) {
		return nil // the runner's default, or a runner the execution answers for itself
	}
	rl, reported, _ := m.opts.Runners.UserBounds(runnerName)
	if !reported {
		return &UserLimitError{Field: "timeout_ms", Runner: runnerName, Asked: timeoutMS, Unreported: true}
	}
	if l := userLimits(Limits{TimeoutMS: timeoutMS}, rl)[0]; l.asked > l.ceiling {
		return &UserLimitError{Field: "timeout_ms", Runner: runnerName, Asked: l.asked, Ceiling: l.ceiling}
	}
	return nil
}

// Filter selects the sessions List returns.
type Filter struct {
	// WithDeleted includes deleted sessions.
	WithDeleted bool
	// Owner, when not "", keeps only the sessions of that user.
	Owner string
}

// NotFound is the error of a session id that names no session: the same, whether the
// session does not exist or exists but is not the caller's to see.
func NotFound(id string) error { return fmt.Errorf("%w: %s", ErrNotFound, id) }

// IndexNamespace is the storage namespace of a tenant's host-wide records.
func IndexNamespace(tenant string) string { return "t/" + tenant + "/index" }

const sessionPrefix = "session/"

// ownerPrefix keys the index of sessions by owner: ownerPrefix+owner+"/"+id, an empty
// value, written with the session's first record (an owner never changes), so a user's
// listing reads that user's sessions only. ownersIndexedKey marks an index namespace
// whose every owned session has its entry (IndexOwners made them for records stored
// before the index).
const (
	ownerPrefix      = "owner/"
	ownersIndexedKey = "meta/owners-indexed"
)

func ownerKey(owner, id string) []byte { return []byte(ownerPrefix + owner + "/" + id) }

// Options configure a Manager.
type Options struct {
	Store   storage.Storage
	Runners *plugins.Runners
	// DataDir holds each session's working directory under sessions/<id>/work.
	DataDir string
	// Policies are the accepted policy names; DefaultPolicy is used when a request names none.
	Policies      []string
	DefaultPolicy string
	// Node names this host for the session's owner field.
	Node string
	// Logger gets what the Manager does on its own (nil: nothing is logged).
	Logger hclog.Logger
}

// Manager keeps sessions.
type Manager struct {
	opts Options

	mu    sync.Mutex
	gates map[string]*gate

	// cache holds the stored records of recently used sessions, decoded, so the check
	// every request makes (does the session exist, is it active) costs no storage read
	// and no decoding. This host is the only writer of its sessions' records (see put)
	// but for an operator's DeleteOwnerGone through another host, so the cache is updated
	// on every write, and read again after cacheFor; writes counts them, so a read racing a
	// write never caches what the write replaced. Cached sessions are never handed out,
	// only copies.
	cacheMu sync.Mutex
	cache   map[string]cached
	// cacheFor is how long a cached record is used before it is read again: another host
	// may have changed it (an operator's DeleteOwnerGone of a session this host runs).
	cacheFor time.Duration
	writes   uint64

	// ownersIndexed is set once every owned session has its owner index entry
	// (IndexOwners); until then a listing by owner reads every session.
	ownersIndexed atomic.Bool

	// started names, by session, the runners this Manager has had a process started for
	// (see noteStarted); guarded by mu.
	started map[string][]string
}

// gate is what the manager keeps in memory of a session while requests use it: its
// execution slots, and the lock that orders getting its runner processes against its
// delete, so that no process is started for a session once its delete has stopped them.
// It is dropped when its last user leaves (its slots are all free then).
type gate struct {
	slots chan struct{}
	users int          // requests holding or waiting for a slot, getting a runner, deleting
	rw    sync.RWMutex // held shared while a runner process is got or spending kept, exclusively by Delete
	// spent orders the writes of the session's spending (keepSpent), each of which reads
	// the record, merges into it and writes it back.
	spent sync.Mutex
}

// enter returns the session's gate, counting the caller as one of its users until leave.
func (m *Manager) enter(id string) *gate {
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.gates[id]
	if g == nil {
		g = &gate{}
		m.gates[id] = g
	}
	g.users++
	return g
}

func (m *Manager) leave(id string, g *gate) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if g.users--; g.users == 0 && m.gates[id] == g {
		delete(m.gates, id)
	}
}

// maxCachedSessions bounds the session record cache.
const maxCachedSessions = 4096

// cacheFor is Manager.cacheFor: a host that runs a session another host marked deleted
// (DeleteOwnerGone, its owner thought gone) stops running it within this time.
const cacheFor = 30 * time.Second

// cached is an entry of the session record cache: the record and when it was read or
// written.
type cached struct {
	s  *Session
	at time.Time
}

// NewManager returns a session manager.
func NewManager(opts Options) *Manager {
	if opts.Node == "" {
		opts.Node, _ = os.Hostname()
	}
	return &Manager{opts: opts, gates: map[string]*gate{}, cache: map[string]cached{}, cacheFor: cacheFor, started: map[string][]string{}}
}

var (
	idMu      sync.Mutex
	idEntropy = ulid.Monotonic(rand.Reader, 0)
)

// NewID returns a new time-ordered id; ids made by one process are strictly increasing.
func NewID() string {
	idMu.Lock()
	defer idMu.Unlock()
	return ulid.MustNew(ulid.Timestamp(time.Now()), idEntropy).String()
}

// ValidID reports whether s has the shape of an id this host hands out.
func ValidID(s string) bool {
	_, err := ulid.ParseStrict(s)
	return err == nil
}

// maxQuotedID bounds the bytes of an id a client sent that an error quotes: an id is 26
// characters, and what is not one may be megabytes long (a path of 300,000 escapes).
const maxQuotedID = 80

// quoteID is s, an id or page token a client sent, quoted for an error message: its first
// maxQuotedID bytes, and "…" when there were more.
func quoteID(s string) string { return strconv.Quote(clip.Marked(s, maxQuotedID)) }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// logger returns Options.Logger, or a logger of nothing.
func (m *Manager) logger() hclog.Logger {
	if m.opts.Logger == nil {
		return hclog.NewNullLogger()
	}
	return m.opts.Logger
}

// Node names this host in the sessions it creates (Options.Node, else the host name).
func (m *Manager) Node() string { return m.opts.Node }

// Create validates req and stores a new active session.
func (m *Manager) Create(ctx context.Context, req CreateRequest) (*Session, error) {
	s := &Session{
		ID: NewID(), Tenant: DefaultTenant, Name: strings.TrimSpace(req.Name), AllowNetwork: req.AllowNetwork,
		Policy: req.Policy, Runners: req.Runners, Limits: req.Limits, CreatedAt: time.Now().UTC(),
		State: StateActive, OwnerNode: m.opts.Node, MaxConcurrency: DefaultMaxConcurrency, Owner: req.Owner,
	}
	if s.Owner != "" && !config.ValidUserName(s.Owner) {
		return nil, invalidf("owner %q is not a user name: 1 to %d of a-z, 0-9, '.', '_' and '-', starting with a letter or digit", s.Owner, config.MaxUserNameBytes)
	}
	if config.ReservedUserName(s.Owner) {
		return nil, invalidf("owner %q is a name the host keeps for its own principals and agents (%s), which no user may have", s.Owner, strings.Join(config.ReservedUserNames, ", "))
	}
	// Counted in characters (code points), as the message says: 128 of any script fit,
	// at most 4 bytes each in UTF-8.
	if n := utf8.RuneCountInString(s.Name); n > MaxNameLength {
		return nil, invalidf("name is %d characters, the limit is %d", n, MaxNameLength)
	}
	if req.MaxConcurrency != nil {
		if *req.MaxConcurrency < 1 || *req.MaxConcurrency > MaxMaxConcurrency {
			return nil, invalidf("max_concurrency must be between 1 and %d, got %d", MaxMaxConcurrency, *req.MaxConcurrency)
		}
		s.MaxConcurrency = *req.MaxConcurrency
	}
	if s.Limits.TimeoutMS > MaxTimeoutMS {
		return nil, invalidf("limits.timeout_ms %d exceeds the limit of %d", s.Limits.TimeoutMS, MaxTimeoutMS)
	}
	if mem := s.Limits.MemoryBytes; mem != 0 && (mem < MinMemoryBytes || mem > MaxMemoryBytes) {
		return nil, invalidf("limits.memory_bytes must be between %d (64 MiB) and %d (1 TiB), or 0 for the runner's default; got %d", uint64(MinMemoryBytes), uint64(MaxMemoryBytes), mem)
	}
	if d := s.Limits.MaxDiskBytes; d != 0 && (d < MinDiskBytes || d > MaxDiskBytes) {
		return nil, invalidf("limits.max_disk_bytes must be between %d (8 MiB) and %d (1 TiB), or 0 for the runner's default; got %d", uint64(MinDiskBytes), uint64(MaxDiskBytes), d)
	}
	if s.Policy == "" {
		s.Policy = m.opts.DefaultPolicy
	} else if !contains(m.opts.Policies, s.Policy) {
		return nil, invalidf("policy %q is not one of %s", s.Policy, strings.Join(m.opts.Policies, ", "))
	}
	seen := map[string]bool{}
	for _, r := range s.Runners {
		if m.opts.Runners == nil || !m.opts.Runners.Has(r) {
			return nil, invalidf("%s", m.notConfigured(r))
		}
		if seen[r] {
			return nil, invalidf("runner %q is listed twice", r)
		}
		seen[r] = true
	}
	if s.Runners == nil {
		s.Runners = []string{}
	}
	if req.ByUser {
		if err := m.CheckUser(req); err != nil {
			return nil, err
		}
	}
	var index []storage.Op
	if s.Owner != "" {
		index = []storage.Op{{Kind: storage.OpPut, Key: ownerKey(s.Owner, s.ID), Value: []byte{}}}
	}
	if err := m.put(ctx, s, index...); err != nil {
		return nil, err
	}
	return s, nil
}

// IndexOwners makes sure every owned session has its owner index entry, so that a listing
// by owner reads only that owner's sessions. Sessions this version creates get theirs with
// their first record; those an older limitd stored (before the upgrade, after a rollback,
// or by an older host on the same database during a rolling upgrade) get them here, at
// each start: all of them the first time, then those stored since the last start (a mark
// in storage keeps when the last run began; sessions from some minutes before it are read
// again, as other hosts' clocks and writes may lag). Until it has succeeded once, a
// listing by owner reads every session, as before. It returns how many entries it made.
func (m *Manager) IndexOwners(ctx context.Context) (int, error) {
	ns := IndexNamespace(DefaultTenant)
	mark, ok, err := m.opts.Store.Get(ctx, ns, []byte(ownersIndexedKey))
	if err != nil {
		return 0, fmt.Errorf("read the owner index's mark: %w", err)
	}
	var start []byte
	if last, err := ulid.ParseStrict(string(mark)); ok && err == nil {
		from := ulid.Time(last.Time()).Add(-ownerIndexLag)
		start = []byte(sessionPrefix + ulid.MustNew(ulid.Timestamp(from), zeroEntropy{}).String())
		m.ownersIndexed.Store(true) // indexed up to the mark already
	}
	// Every session stored before the scan begins is indexed when it ends, and those
	// this version stores from then on are indexed as they are made: the next start reads
	// from here (less the lag).
	scanned := ulid.MustNew(ulid.Timestamp(time.Now()), zeroEntropy{}).String()
	made, err := m.indexSessions(ctx, start, func(s *Session) []byte {
		if s.Owner == "" {
			return nil
		}
		return ownerKey(s.Owner, s.ID)
	})
	if err != nil {
		return made, fmt.Errorf("index sessions by owner: %w", err)
	}
	if err := m.opts.Store.Put(ctx, ns, []byte(ownersIndexedKey), []byte(scanned)); err != nil {
		return made, fmt.Errorf("mark the owner index done: %w", err)
	}
	m.ownersIndexed.Store(true)
	return made, nil
}

// indexSessions reads the session records after start, a page at a time, and writes an
// empty index entry at the key entry gives each (none where it gives nil), one batch a
// page; it returns how many it wrote.
func (m *Manager) indexSessions(ctx context.Context, start []byte, entry func(*Session) []byte) (int, error) {
	ns := IndexNamespace(DefaultTenant)
	made := 0
	for {
		res, err := m.opts.Store.Scan(ctx, storage.ScanRequest{Namespace: ns, Prefix: []byte(sessionPrefix), StartAfter: start, Limit: storage.MaxScanLimit})
		if err != nil {
			return made, err
		}
		var ops []storage.Op
		for _, kv := range res.Items {
			start = kv.Key
			s, err := decodeSession(string(kv.Key[len(sessionPrefix):]), kv.Value)
			if err != nil {
				return made, err
			}
			if key := entry(s); key != nil {
				ops = append(ops, storage.Op{Kind: storage.OpPut, Key: key, Value: []byte{}})
			}
		}
		if len(ops) > 0 {
			if err := m.opts.Store.Batch(ctx, ns, ops); err != nil {
				return made, err
			}
			made += len(ops)
		}
		if !res.More || len(res.Items) == 0 {
			return made, nil
		}
	}
}

// ownerIndexLag is how far before the owner index's mark IndexOwners reads again.
const ownerIndexLag = 10 * time.Minute

// zeroEntropy makes the smallest ULID of a millisecond.
type zeroEntropy struct{}

func (zeroEntropy) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// notConfigured says that the runner name is not one of this host's, and which are.
func (m *Manager) notConfigured(name string) string {
	names := m.runnerNames()
	if len(names) == 0 {
		return fmt.Sprintf("runner %q is not configured on this host, which has no runners (its config has no runner block)", name)
	}
	return fmt.Sprintf("runner %q is not configured on this host (configured: %s)", name, strings.Join(names, ", "))
}

func (m *Manager) runnerNames() []string {
	if m.opts.Runners == nil {
		return nil
	}
	return m.opts.Runners.Names()
}

// put stores s's record, and the index entries given with it in the same batch.
func (m *Manager) put(ctx context.Context, s *Session, index ...storage.Op) error {
	return m.write(ctx, s, nil, index)
}

// putIf is put, made only while the stored record is expected (byte for byte), else
// errRecordChanged.
func (m *Manager) putIf(ctx context.Context, s *Session, expected []byte) error {
	return m.write(ctx, s, expected, nil)
}

// write is put and putIf: with expected, a compare-and-swap of the record.
func (m *Manager) write(ctx context.Context, s *Session, expected []byte, index []storage.Op) error {
	shown := *s
	shown.RunnerSpent = nil // stored once, as runner_spent
	rec := record{Session: &shown, RunnerSpent: s.RunnerSpent}
	// A record from before the field, rewritten (a delete, a spending), stays without it:
	// it must not come to say that nothing was started.
	if !s.startedUnknown {
		started := append([]string{}, s.runnersStarted...)
		rec.RunnersStarted = &started
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	// Cached as a reader of the record would decode it, not as s is in memory.
	stored, err := decodeSession(s.ID, b)
	if err != nil {
		return err
	}
	m.cacheMu.Lock()
	m.writes++
	delete(m.cache, s.ID)
	m.cacheMu.Unlock()
	switch {
	case expected != nil:
		var res storage.CASResult
		res, err = m.opts.Store.CompareAndSwap(ctx, storage.CASRequest{
			Namespace: IndexNamespace(s.Tenant), Key: []byte(sessionPrefix + s.ID),
			ExpectPresent: true, Expected: expected, Value: b,
		})
		if err == nil && !res.Swapped {
			err = errRecordChanged
		}
	case len(index) == 0:
		err = m.opts.Store.Put(ctx, IndexNamespace(s.Tenant), []byte(sessionPrefix+s.ID), b)
	default:
		ops := append([]storage.Op{{Kind: storage.OpPut, Key: []byte(sessionPrefix + s.ID), Value: b}}, index...)
		err = m.opts.Store.Batch(ctx, IndexNamespace(s.Tenant), ops)
	}
	// Counted again once the write is over: a read that began while it was in flight
	// (after the count above) may have returned the record it replaces, and must not
	// cache it over this one.
	m.cacheMu.Lock()
	m.writes++
	if err != nil {
		// A read that began after the count above and ended before this one may have
		// cached the record this write replaces, and the write may have landed.
		delete(m.cache, s.ID)
	}
	m.cacheMu.Unlock()
	if errors.Is(err, errRecordChanged) {
		return err
	}
	if err != nil {
		// The write may have landed or not: the next Get reads the store.
		return fmt.Errorf("store session %s: %w", s.ID, err)
	}
	m.remember(s.ID, stored, 0, true)
	return nil
}

// errRecordChanged is putIf's answer when the stored record is no longer the one expected.
var errRecordChanged = errors.New("the session's stored record changed meanwhile")

// update changes an active session's record by change, applied to the record as stored
// (not as cached) and written back only if it is still what was read: one another host
// changed meanwhile (an operator's DeleteOwnerGone of a session this host runs) is read
// again, never overwritten. change returns false to write nothing. A deleted record is
// left as it is (and cached as it is, so this host stops running the session): update
// returns it, with ErrDeleted.
func (m *Manager) update(ctx context.Context, id string, change func(*Session) bool) error {
	for attempt := 1; ; attempt++ {
		m.cacheMu.Lock()
		seen := m.writes
		m.cacheMu.Unlock()
		b, ok, err := m.opts.Store.Get(ctx, IndexNamespace(DefaultTenant), []byte(sessionPrefix+id))
		if err != nil {
			return fmt.Errorf("load session %s: %w", id, err)
		}
		if !ok {
			return NotFound(id)
		}
		s, err := decodeSession(id, b)
		if err != nil {
			return err
		}
		if s.State != StateActive {
			m.remember(id, s, seen, false)
			return fmt.Errorf("%w: %s was deleted at %s", ErrDeleted, id, s.DeletedAt.Format(time.RFC3339))
		}
		if !change(s) {
			return nil
		}
		err = m.putIf(ctx, s, b)
		if !errors.Is(err, errRecordChanged) || attempt == 5 {
			return err
		}
	}
}

// decodeSession decodes a stored session record.
func decodeSession(id string, b []byte) (*Session, error) {
	var s Session
	rec := record{Session: &s}
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("session %s: corrupt record: %w", id, err)
	}
	s.RunnerSpent = rec.RunnerSpent
	if rec.RunnersStarted != nil {
		s.runnersStarted = *rec.RunnersStarted
	} else {
		s.startedUnknown = true
	}
	return &s, nil
}

// clone returns a copy of s that shares nothing with it.
func (s *Session) clone() *Session {
	c := *s
	c.Runners = slices.Clone(s.Runners)
	c.runnersStarted = slices.Clone(s.runnersStarted)
	if s.RunnerSpent != nil {
		c.RunnerSpent = make(map[string]map[string]float64, len(s.RunnerSpent))
		for name, spent := range s.RunnerSpent {
			c.RunnerSpent[name] = maps.Clone(spent)
		}
	}
	return &c
}

// remember caches a session's stored record: always after this host wrote it (force),
// otherwise only if no write happened since the read that returned it began (at
// writes == seen). Sessions another node runs are not cached: that host writes them.
func (m *Manager) remember(id string, s *Session, seen uint64, force bool) {
	if m.ownedElsewhere(s) != nil {
		// Another host writes that record: a copy here would go stale.
		return
	}
	if s.State == StateDeleted {
		// Any host's retention sweep may purge it (Retention): a copy here would outlive
		// it. Deleted sessions are seldom asked for.
		m.cacheMu.Lock()
		delete(m.cache, id)
		m.cacheMu.Unlock()
		return
	}
	m.cacheMu.Lock()
	defer m.cacheMu.Unlock()
	if !force && m.writes != seen {
		return
	}
	if _, ok := m.cache[id]; !ok && len(m.cache) >= maxCachedSessions {
		for k := range m.cache { // evict one at random
			delete(m.cache, k)
			break
		}
	}
	m.cache[id] = cached{s: s, at: time.Now()}
}

// forget drops a session's record from the cache.
func (m *Manager) forget(id string) {
	m.cacheMu.Lock()
	defer m.cacheMu.Unlock()
	m.writes++
	delete(m.cache, id)
}

// cached returns a session's stored record, decoded, from the cache or the store. The
// result is the cache's: not to be changed or handed out.
func (m *Manager) cached(ctx context.Context, id string) (*Session, bool, error) {
	m.cacheMu.Lock()
	c, ok := m.cache[id]
	seen := m.writes
	m.cacheMu.Unlock()
	if ok && time.Since(c.at) < m.cacheFor {
		return c.s, true, nil
	}
	b, ok, err := m.opts.Store.Get(ctx, IndexNamespace(DefaultTenant), []byte(sessionPrefix+id))
	if err != nil || !ok {
		return nil, ok, err
	}
	s, err := decodeSession(id, b)
	if err != nil {
		return nil, false, err
	}
	m.remember(id, s, seen, false)
	return s, true, nil
}

// Get returns a session, deleted ones included.
func (m *Manager) Get(ctx context.Context, id string) (*Session, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%w: %s is not a session id", ErrNotFound, quoteID(id))
	}
	s, ok, err := m.cached(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("load session %s: %w", id, err)
	}
	if !ok {
		return nil, NotFound(id)
	}
	return s.clone(), nil
}

// Active returns a session that can run executions.
func (m *Manager) Active(ctx context.Context, id string) (*Session, error) {
	s, err := m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if s.State != StateActive {
		return nil, fmt.Errorf("%w: %s was deleted at %s", ErrDeleted, id, s.DeletedAt.Format(time.RFC3339))
	}
	return s, nil
}

// List returns up to perPage sessions that f selects after the opaque token, oldest
// first, and the token of the next page ("" at the end). A page is full unless it is the
// last: the sessions f leaves out do not shorten it (a user's page of sessions on a host
// of many users reads as many records as it must to fill it).
func (m *Manager) List(ctx context.Context, perPage int, token string, f Filter) ([]*Session, string, error) {
	if perPage <= 0 {
		perPage = 50
	}
	perPage = min(perPage, storage.MaxScanLimit)
	start := []byte(nil)
	if token != "" {
		if !ValidID(token) {
			return nil, "", invalidf("next_token %s is not valid", quoteID(token))
		}
		start = []byte(sessionPrefix + token)
	}
	if f.Owner != "" && m.ownersIndexed.Load() {
		return m.listOwned(ctx, perPage, token, f)
	}
	var out []*Session
	for {
		res, err := m.opts.Store.Scan(ctx, storage.ScanRequest{
			Namespace: IndexNamespace(DefaultTenant), Prefix: []byte(sessionPrefix), StartAfter: start, Limit: perPage + 1 - len(out),
		})
		if err != nil {
			return nil, "", fmt.Errorf("list sessions: %w", err)
		}
		for _, kv := range res.Items {
			start = kv.Key
			var s Session
			if err := json.Unmarshal(kv.Value, &s); err != nil {
				return nil, "", fmt.Errorf("session %s: corrupt record: %w", kv.Key, err)
			}
			if s.State != StateActive && !f.WithDeleted || f.Owner != "" && s.Owner != f.Owner {
				continue
			}
			out = append(out, &s)
		}
		if len(out) > perPage {
			return out[:perPage], out[perPage-1].ID, nil
		}
		if !res.More {
			return out, "", nil
		}
	}
}

// listOwned is List of one owner's sessions, read through the owner index (token valid).
func (m *Manager) listOwned(ctx context.Context, perPage int, token string, f Filter) ([]*Session, string, error) {
	prefix := ownerKey(f.Owner, "")
	var start []byte
	if token != "" {
		start = ownerKey(f.Owner, token)
	}
	var out []*Session
	for {
		res, err := m.opts.Store.Scan(ctx, storage.ScanRequest{
			Namespace: IndexNamespace(DefaultTenant), Prefix: prefix, StartAfter: start, Limit: perPage + 1 - len(out),
		})
		if err != nil {
			return nil, "", fmt.Errorf("list sessions: %w", err)
		}
		for _, kv := range res.Items {
			start = kv.Key
			id := string(kv.Key[len(prefix):])
			s, ok, err := m.cached(ctx, id)
			if err != nil {
				return nil, "", fmt.Errorf("list sessions: %w", err)
			}
			if !ok || s.State != StateActive && !f.WithDeleted || s.Owner != f.Owner {
				continue
			}
			out = append(out, s.clone())
		}
		if len(out) > perPage {
			return out[:perPage], out[perPage-1].ID, nil
		}
		if !res.More {
			return out, "", nil
		}
	}
}

// WorkDir is the session's private working directory.
func (m *Manager) WorkDir(id string) string {
	return filepath.Join(m.opts.DataDir, "sessions", id, "work")
}

// Delete stops the session's runner processes, removes its working directory and marks
// it deleted; its traces stay, until the retention sweep purges the session with them
// (Retention; by default it keeps them for good). Executions that get the session's runner after it began
// fail with ErrDeleted. Once begun it completes even if ctx ends: a delete stopped
// half-way would leave a session without its directory, or a process without its session.
// A session another node runs is refused (OtherNodeError): its processes and files are
// that host's to stop and remove.
func (m *Manager) Delete(ctx context.Context, id string) (*Session, error) {
	return m.delete(ctx, id, false)
}

// DeleteOwnerGone marks deleted a session whose node is gone for good, from another host:
// the record says deleted (its traces stay) and this host's processes and files of it, if
// any, go; the gone host's files stay on its disk. If that host is in fact alive, it goes
// on running the session's executions until it reads the record again (after cacheFor,
// or at its next write of it, which never undoes the delete: see update), and the next
// one removes its processes and files there: use it only for a host that will not come
// back.
func (m *Manager) DeleteOwnerGone(ctx context.Context, id string) (*Session, error) {
	return m.delete(ctx, id, true)
}

func (m *Manager) delete(ctx context.Context, id string, ownerGone bool) (*Session, error) {
	if _, err := m.Get(ctx, id); err != nil {
		return nil, err
	}
	ctx = context.WithoutCancel(ctx)
	g := m.enter(id)
	defer m.leave(id, g)
	g.rw.Lock()
	defer g.rw.Unlock()
	// Read again under the lock: a delete that ran meanwhile is not done twice.
	s, err := m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := m.ownedElsewhere(s); err != nil && !ownerGone && s.State != StateDeleted {
		return nil, err
	}
	if m.opts.Runners != nil {
		m.opts.Runners.Release(ctx, id)
	}
	m.mu.Lock()
	delete(m.started, id)
	m.mu.Unlock()
	if err := os.RemoveAll(filepath.Dir(m.WorkDir(id))); err != nil {
		return nil, fmt.Errorf("remove working directory of session %s: %w", id, err)
	}
	if s.State == StateDeleted {
		return s, nil
	}
	s.State = StateDeleted
	s.DeletedAt = time.Now().UTC()
	// Indexed by when it was deleted, with its record, for the retention sweep (Retention).
	if err := m.put(ctx, s, storage.Op{Kind: storage.OpPut, Key: deletedKey(s.DeletedAt, s.ID), Value: []byte{}}); err != nil {
		return nil, err
	}
	return s, nil
}

// Acquire takes one of the session's execution slots, waiting until ctx is done. The
// returned func gives it back.
func (m *Manager) Acquire(ctx context.Context, s *Session) (func(), error) {
	g := m.enter(s.ID)
	m.mu.Lock()
	if g.slots == nil || cap(g.slots) != s.MaxConcurrency {
		g.slots = make(chan struct{}, s.MaxConcurrency)
	}
	ch := g.slots
	m.mu.Unlock()
	release := func() {
		<-ch
		m.leave(s.ID, g)
	}
	select {
	case ch <- struct{}{}:
		return release, nil
	default:
	}
	select {
	case ch <- struct{}{}:
		return release, nil
	case <-ctx.Done():
		m.leave(s.ID, g)
		return nil, fmt.Errorf("%w (%d running)", ErrBusy, s.MaxConcurrency)
	}
}

// Runner returns the session's process for the named runner, starting it if needed.
func (m *Manager) Runner(ctx context.Context, s *Session, name string) (*plugins.Handle, error) {
	if m.opts.Runners == nil || !m.opts.Runners.Has(name) {
		return nil, invalidf("%s", m.notConfigured(name))
	}
	if len(s.Runners) > 0 && !contains(s.Runners, name) {
		return nil, invalidf("runner %q is not enabled for this session (enabled: %s)", name, strings.Join(s.Runners, ", "))
	}
	// A session of this host that another host marked deleted (an operator's
	// DeleteOwnerGone, this host thought gone) has its processes and files here removed
	// as this host's delete would, once the lock below is given back.
	var deletedElsewhere bool
	defer func() {
		if deletedElsewhere {
			m.logger().Warn("a session this host runs was deleted through another host (owner_gone); its processes and files here are removed", "session", s.ID)
			_, _ = m.delete(context.WithoutCancel(ctx), s.ID, true)
		}
	}()
	// The session may have been deleted since the caller looked it up: a process started
	// now would outlive it.
	g := m.enter(s.ID)
	defer m.leave(s.ID, g)
	g.rw.RLock()
	defer g.rw.RUnlock()
	// The record as stored now, not as the caller read it: its spending is up to date.
	cur, err := m.Active(ctx, s.ID)
	if err != nil {
		if errors.Is(err, ErrDeleted) {
			m.mu.Lock()
			// This host's delete forgets what it started for the session; another's does not.
			_, deletedElsewhere = m.started[s.ID]
			m.mu.Unlock()
		}
		return nil, err
	}
	if err := m.ownedElsewhere(cur); err != nil {
		return nil, err
	}
	dir := m.WorkDir(s.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create working directory: %w", err)
	}
	h, err := m.opts.Runners.Get(ctx, runner.Session{
		ID: s.ID, Limits: s.Limits.RunnerLimits(), AllowNetwork: s.AllowNetwork, WorkDir: dir,
		Spent: cur.RunnerSpent[name],
	}, name)
	if err != nil {
		return nil, err
	}
	if h.Fresh {
		m.noteStarted(ctx, g, s.ID, name, h)
	}
	id := s.ID
	h.Spent = func(ctx context.Context, spent map[string]float64) error {
		return m.keepSpent(ctx, id, name, spent)
	}
	return h, nil
}

// noteStarted is told of each process the runners started for the session (h, Fresh).
// The first this Manager gets for a runner is Replaced if the session's record says an
// earlier limitd had started one (its state, the interpreter's variables, went with that
// limitd; the runners mark the processes they replace themselves); and the record is
// made to say so if it does not yet. The caller holds g.rw for reading. A record that
// could not be written leaves the next limitd unable to tell, no more: the execution
// goes on.
func (m *Manager) noteStarted(ctx context.Context, g *gate, id, name string, h *plugins.Handle) {
	m.mu.Lock()
	first := !slices.Contains(m.started[id], name)
	if first {
		m.started[id] = append(m.started[id], name)
	}
	m.mu.Unlock()
	if !first {
		return
	}
	g.spent.Lock()
	defer g.spent.Unlock()
	_ = m.update(ctx, id, func(s *Session) bool {
		if s.startedUnknown || slices.Contains(s.runnersStarted, name) {
			// A record from before runners_started stays as it is: which of its runners
			// had a process is not known, so each counts as having had one.
			h.Replaced = true
			return false
		}
		s.runnersStarted = append(s.runnersStarted, name)
		return true
	})
}

// keepSpent merges into the session's record what the named runner reported the session
// has spent (its running totals, see runner.SpentPrefix), keeping the larger figure of
// each key, as spending only grows. It writes the record only when a figure grew, so an
// execution that reports the same totals, or none, costs no write; a deleted session's
// record is left as it is.
func (m *Manager) keepSpent(ctx context.Context, id, name string, spent map[string]float64) error {
	// Most results change nothing (a refused execution reports the same totals): the
	// cached record says so without a lock or a copy.
	if s, ok, err := m.cached(ctx, id); err == nil && ok {
		if _, grew := mergeSpent(s.RunnerSpent[name], spent); !grew {
			return nil
		}
	}
	g := m.enter(id)
	defer m.leave(id, g)
	// Not while the session is deleted: the delete's write would be overwritten.
	g.rw.RLock()
	defer g.rw.RUnlock()
	g.spent.Lock()
	defer g.spent.Unlock()
	err := m.update(ctx, id, func(s *Session) bool {
		merged, grew := mergeSpent(s.RunnerSpent[name], spent)
		if !grew {
			return false
		}
		if s.RunnerSpent == nil {
			s.RunnerSpent = map[string]map[string]float64{}
		}
		s.RunnerSpent[name] = merged
		return true
	})
	if err != nil && !errors.Is(err, ErrDeleted) {
		return fmt.Errorf("keep spending of session %s with runner %q: %w", id, name, err)
	}
	return nil
}

// mergeSpent returns old with each figure of reported that is larger than old's of the
// same key, and whether there was one (else nil, false). old is not changed.
func mergeSpent(old, reported map[string]float64) (map[string]float64, bool) {
	var merged map[string]float64
	for k, v := range reported {
		if v <= old[k] { // a figure never reported counts as nothing spent
			continue
		}
		if merged == nil {
			merged = maps.Clone(old)
			if merged == nil {
				merged = map[string]float64{}
			}
		}
		merged[k] = v
	}
	return merged, merged != nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
