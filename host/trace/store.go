package trace

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/limitgraph/limit/internal/keyed"
	"github.com/limitgraph/limit/sdk/storage"
)

// maxAppendAttempts bounds how often one update retries after losing the race for an index.
// Every lost race is another update that succeeded, so the bound only guards against a
// backend whose conditional batches misbehave.
const maxAppendAttempts = 10000

// Store keeps traces and their provenance in a storage.Storage. It holds no state of its own
// besides its configuration and a cache of what never changes (the session of a trace), so
// any number of Stores, in any number of processes, may share one storage backend. All
// methods are safe for concurrent use.
type Store struct {
	st  storage.Storage
	key *Key
	// keys holds the public keys whose checkpoints the store accepts: its own and those
	// Options.TrustedKeys names. They come from the caller (the host's configuration),
	// never from storage, so whoever can write the storage cannot add one.
	keys    keyring
	tenant  string
	now     func() time.Time
	tempDir string
	// claims serializes the updates of one chain among this process's goroutines, so they
	// queue instead of all racing (and rereading) for every index. The conditional batch
	// alone keeps the chain linear across processes.
	claims keyed.Mutex
	// group combines the batches of concurrent writers to one namespace.
	group groupWriter
	// multiNS is whether the storage takes batch ops in other namespaces (0: not asked yet,
	// 1: yes, 2: no); then a trace is created in one write instead of two.
	multiNS atomic.Int32
	// sessions caches the session of the traces this store located or created, saving the
	// index read in front of every later call. A trace's index entry is written once
	// (with the trace, or before it) and never changes, so the cache never goes stale.
	sessions locationCache
	// heads caches the head of the chain each trace had when this store last wrote or
	// checked a checkpoint signing it (see checkSigned).
	heads locationCache
}

// maxCachedLocations bounds the locationCache; a full cache starts over.
const maxCachedLocations = 1 << 14

// locationCache maps trace ids to session ids (or to heads).
type locationCache struct {
	mu sync.Mutex
	m  map[string]string
}

func (c *locationCache) get(traceID string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sid, ok := c.m[traceID]
	return sid, ok
}

func (c *locationCache) add(traceID, sessionID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedLocations {
		c.m = make(map[string]string)
	}
	c.m[traceID] = sessionID
}

func (c *locationCache) remove(traceID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, traceID)
}

// Options configures a Store. The zero value is the default.
type Options struct {
	// Tenant owns everything the store reads and writes; DefaultTenant when empty.
	Tenant string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// TempDir is where WriteBundle spools a bundle before sending it; os.TempDir() when
	// empty.
	TempDir string
	// TrustedKeys are the public keys of other hosts (sharing the storage) whose
	// checkpoints the store accepts as it accepts its own: a chain they signed verifies,
	// and the store extends it, flags it, copies it into the merged record and exports it,
	// signing what it adds with its own key. Checkpoints of any other key are
	// ErrForeignKey.
	TrustedKeys []ed25519.PublicKey
}

// New returns a Store over st that signs with key.
func New(st storage.Storage, key *Key, opts Options) (*Store, error) {
	if st == nil || key == nil {
		return nil, errors.New("trace store needs a storage and a signing key")
	}
	if opts.Tenant == "" {
		opts.Tenant = DefaultTenant
	}
	if !ValidTenant(opts.Tenant) {
		return nil, fmt.Errorf("tenant %q: want 1 to 64 of [a-z0-9-]", opts.Tenant)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	keys := newKeyring(key.PublicKey(), opts.TrustedKeys...)
	return &Store{st: st, key: key, keys: keys, tenant: opts.Tenant, now: opts.Now, tempDir: opts.TempDir, group: groupWriter{st: st}}, nil
}

// PublicKey returns the public half of the key the store signs with.
func (s *Store) PublicKey() ed25519.PublicKey { return s.key.PublicKey() }

// Tenant returns the store's tenant.
func (s *Store) Tenant() string { return s.tenant }

func (s *Store) timestamp() time.Time { return s.now().UTC() }

// batchNamespaces tells whether the storage takes batch ops in other namespaces.
func (s *Store) batchNamespaces(ctx context.Context) (bool, error) {
	switch s.multiNS.Load() {
	case 1:
		return true, nil
	case 2:
		return false, nil
	}
	ok, err := storage.TakesBatchNamespaces(ctx, s.st)
	if err != nil {
		return false, err
	}
	if ok {
		s.multiNS.Store(1)
	} else {
		s.multiNS.Store(2)
	}
	return ok, nil
}

// location says where a trace lives.
type location struct {
	traceID, sessionID, ns string
}

// NotFound is the error of a trace id that names no trace: the same, whether the trace
// does not exist or exists but is not the caller's to see.
func NotFound(id string) error { return fmt.Errorf("%w: %s", ErrNotFound, id) }

// locate finds the session of a trace through the index namespace.
func (s *Store) locate(ctx context.Context, traceID string) (location, error) {
	if !ValidID(traceID) {
		return location{}, fmt.Errorf("%w: %s is not a trace id", ErrNotFound, quoteID(traceID))
	}
	if sid, ok := s.sessions.get(traceID); ok {
		return s.sessionLocation(traceID, sid), nil
	}
	v, ok, err := s.st.Get(ctx, IndexNamespace(s.tenant), recordKey(traceID))
	if err != nil {
		return location{}, fmt.Errorf("look up trace %s: %w", traceID, err)
	}
	if !ok {
		return location{}, NotFound(traceID)
	}
	sid := string(v)
	if !ValidID(sid) {
		return location{}, fmt.Errorf("%w: index entry of trace %s names session %q", ErrCorrupt, traceID, v)
	}
	s.sessions.add(traceID, sid)
	return s.sessionLocation(traceID, sid), nil
}

func (s *Store) sessionLocation(traceID, sessionID string) location {
	return location{traceID: traceID, sessionID: sessionID, ns: SessionNamespace(s.tenant, sessionID)}
}

// loadRecord reads a trace's stored record. A missing record (a crash after the index entry
// was written) reads as not found.
func (s *Store) loadRecord(ctx context.Context, loc location) (Record, []byte, error) {
	raw, ok, err := s.st.Get(ctx, loc.ns, recordKey(loc.traceID))
	if err != nil {
		return Record{}, nil, fmt.Errorf("read trace %s: %w", loc.traceID, err)
	}
	if !ok {
		return Record{}, nil, fmt.Errorf("%w: %s", ErrNotFound, loc.traceID)
	}
	rec, err := parseRecord(raw)
	if err != nil {
		return Record{}, nil, fmt.Errorf("%w: trace %s: %v", ErrCorrupt, loc.traceID, err)
	}
	if rec.ID != loc.traceID || rec.SessionID != loc.sessionID {
		return Record{}, nil, fmt.Errorf("%w: trace %s: stored record is of trace %s in session %s", ErrCorrupt, loc.traceID, rec.ID, rec.SessionID)
	}
	return rec, raw, nil
}

// scan calls fn for every key with prefix in ns after startAfter, in order.
func (s *Store) scan(ctx context.Context, ns string, prefix, startAfter []byte, keysOnly bool, fn func(key, value []byte) error) error {
	for {
		res, err := s.st.Scan(ctx, storage.ScanRequest{
			Namespace: ns, Prefix: prefix, StartAfter: startAfter, Limit: storage.MaxScanLimit, KeysOnly: keysOnly,
		})
		if err != nil {
			return fmt.Errorf("scan %s: %w", prefix, err)
		}
		for _, kv := range res.Items {
			if err := fn(kv.Key, kv.Value); err != nil {
				return err
			}
		}
		if !res.More || len(res.Items) == 0 {
			return nil
		}
		startAfter = res.Items[len(res.Items)-1].Key
	}
}

// chainError marks a problem of what storage holds (as opposed to a failure to read it).
type chainError struct{ err error }

func (e *chainError) Error() string { return e.err.Error() }
func (e *chainError) Unwrap() error { return e.err }

// scanEntries calls fn for the stored entries of a chain from index from on, in order, and
// fails with a *chainError if an index is missing.
func (s *Store) scanEntries(ctx context.Context, loc location, from int64, fn func(i int64, raw []byte) error) error {
	var after []byte
	if from > 0 {
		after = entryKey(loc.traceID, from-1)
	}
	i := from
	return s.scan(ctx, loc.ns, entryPrefix(loc.traceID), after, false, func(key, value []byte) error {
		if !bytes.Equal(key, entryKey(loc.traceID, i)) {
			return &chainError{fmt.Errorf("entry %d is missing (found key %q instead)", i, key)}
		}
		if err := fn(i, value); err != nil {
			return err
		}
		i++
		return nil
	})
}

// catchUp applies the entries stored beyond rec.Length to rec. A chain that does not verify
// is reported as ErrCorrupt, together with the record as far as the chain verified.
func (s *Store) catchUp(ctx context.Context, loc location, rec Record) (Record, error) {
	r := resume(rec)
	err := s.scanEntries(ctx, loc, rec.Length, func(i int64, raw []byte) error {
		if _, err := r.add(raw); err != nil {
			return &chainError{fmt.Errorf("entry %d: %w", i, err)}
		}
		return nil
	})
	var ce *chainError
	if errors.As(err, &ce) {
		return r.rec, fmt.Errorf("%w: trace %s: %v", ErrCorrupt, loc.traceID, ce)
	}
	return r.rec, err
}

// Create stores a new trace of the session with data (a JSON object; empty means {}) and the
// first entry of its chain, "created" by agent, whose data holds kind, tenant and the SHA-256
// of the data's canonical JSON. It does not check that the session exists. The data is stored,
// and returned, in canonical form (RFC 8785). It costs two storage writes (see CreateWith).
func (s *Store) Create(ctx context.Context, sessionID, kind string, data json.RawMessage, agent string) (Record, error) {
	rec, _, err := s.CreateWith(ctx, sessionID, kind, data, agent, Update{})
	return rec, err
}

// Get returns a trace, caught up with any entry stored beyond what its record reflects (left
// by a crash). A malformed id reads as ErrNotFound. A merged trace whose session was purged
// (PurgeSession) is read from its copy in the shared record.
func (s *Store) Get(ctx context.Context, traceID string) (Record, error) {
	var (
		loc location
		rec Record
		raw []byte
	)
	err := s.read(ctx, traceID, func(l location) error {
		var err error
		loc = l
		rec, raw, err = s.loadRecord(ctx, l)
		return err
	})
	if err != nil {
		return Record{}, err
	}
	up, err := s.catchUp(ctx, loc, rec)
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return Record{}, err
	}
	// A chain that does not verify beyond the record is left for Verify to report; the
	// record shows what did verify. A copy in the shared record is only read.
	if up.Length > rec.Length && !s.isMerged(loc) {
		if want, err := canonicalJSON(up); err == nil {
			// Best effort: a failed or lost swap leaves the record for the next writer.
			_, _ = s.st.CompareAndSwap(ctx, storage.CASRequest{
				Namespace: loc.ns, Key: recordKey(traceID), ExpectPresent: true, Expected: raw, Value: want,
			})
		}
	}
	return up, nil
}

// SessionOf returns the session of a trace, read from the index alone, so that it answers
// for a trace whose stored record is damaged (which Get refuses with ErrCorrupt). A
// malformed id, or a trace whose session was purged, reads as ErrNotFound.
func (s *Store) SessionOf(ctx context.Context, traceID string) (string, error) {
	loc, err := s.locate(ctx, traceID)
	return loc.sessionID, err
}

// Chain returns a trace's provenance entries in order, as stored (Verify checks them); a
// purged session's merged trace's, from its copy in the shared record.
func (s *Store) Chain(ctx context.Context, traceID string) ([]Entry, error) {
	var out []Entry
	err := s.read(ctx, traceID, func(loc location) error {
		if _, _, err := s.loadRecord(ctx, loc); err != nil {
			return err
		}
		out = nil
		err := s.scanEntries(ctx, loc, 0, func(i int64, raw []byte) error {
			e, _, err := parseEntry(raw)
			if err != nil {
				return &chainError{fmt.Errorf("entry %d: %w", i, err)}
			}
			out = append(out, e)
			return nil
		})
		var ce *chainError
		if errors.As(err, &ce) {
			return fmt.Errorf("%w: trace %s: %v", ErrCorrupt, traceID, ce)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Append adds an entry of in.Kind by in.Agent with in.Data (any JSON value; empty means
// null) to a trace's chain and returns it as stored, with index, timestamp and hashes; the
// other fields of in are ignored. Kinds that change the record (ReservedKind) are refused:
// use AddFlag and SetStatus. A merged trace's chain is final: Append refuses it with
// ErrFinal. It is Apply with one entry: one storage write.
func (s *Store) Append(ctx context.Context, traceID string, in Entry) (Entry, error) {
	_, entries, err := s.Apply(ctx, traceID, in.Agent, Update{Entries: []Entry{{Kind: in.Kind, Data: in.Data}}, UnlessMerged: true})
	if err != nil {
		return Entry{}, err
	}
	return entries[0], nil
}

// AddFlag attaches a flag to a trace by appending a "flagged" entry whose data is the flag,
// and returns the updated record. A zero f.Timestamp means now. It is Apply with one flag:
// one storage write.
func (s *Store) AddFlag(ctx context.Context, traceID string, f Flag, agent string) (Record, error) {
	rec, _, err := s.Apply(ctx, traceID, agent, Update{Flags: []Flag{f}})
	return rec, err
}

// SetStatus moves a trace to status by appending a "quarantined", "merged" or "reactivated"
// (back to active) entry with the reason, and returns the updated record. A trace already in
// that status is returned unchanged, with no entry appended and nothing written. Governance
// decides whether a change is allowed; SetStatus does not. It is Apply with a status: one
// storage write.
func (s *Store) SetStatus(ctx context.Context, traceID string, status Status, agent, reason string) (Record, error) {
	if !status.Valid() {
		return Record{}, fmt.Errorf("%w: unknown status %q (want %s, %s or %s)", ErrInvalid, status, StatusActive, StatusQuarantined, StatusMerged)
	}
	rec, _, err := s.Apply(ctx, traceID, agent, Update{Status: status, Reason: reason})
	return rec, err
}

// ListBySession returns a page of a session's traces in creation order, and the token of the
// next page ("" after the last). pageSize 0 means DefaultPageSize; it is capped at
// MaxPageSize. Records are as stored: each reflects at least every acknowledged write. A
// damaged record is left out (see SessionPage, which names it).
func (s *Store) ListBySession(ctx context.Context, sessionID string, pageSize int, pageToken string) ([]Record, string, error) {
	p, err := s.SessionPage(ctx, sessionID, pageSize, pageToken)
	return p.Records, p.Next, err
}

// ListMerged returns a page of the traces copied into the merged namespace, in creation
// order, and the token of the next page ("" after the last). A damaged copy is left out
// (see MergedPage, which names it).
func (s *Store) ListMerged(ctx context.Context, pageSize int, pageToken string) ([]Record, string, error) {
	p, err := s.MergedPage(ctx, pageSize, pageToken)
	return p.Records, p.Next, err
}

// Page is a page of a listing of traces.
type Page struct {
	// Records are the page's traces, in creation order.
	Records []Record
	// Damaged are the ids of the page's traces left out of Records, in the same order:
	// their stored record does not decode, or is another trace's or session's, or (in the
	// merged namespace) the copy does not verify against the chain copied with it. One damaged
	// record does not keep the others from being listed; reading the trace itself answers
	// ErrCorrupt, and Verify says what is wrong.
	Damaged []string
	// Next is the token of the next page, "" after the last.
	Next string
}

// SessionPage returns a page of a session's traces, as ListBySession, and the ids of those
// whose stored record is damaged.
func (s *Store) SessionPage(ctx context.Context, sessionID string, pageSize int, pageToken string) (Page, error) {
	if !ValidID(sessionID) {
		return Page{}, fmt.Errorf("%w: %s is not a session id", ErrNotFound, quoteID(sessionID))
	}
	return s.list(ctx, SessionNamespace(s.tenant, sessionID), sessionID, pageSize, pageToken)
}

// MergedPage returns a page of the traces copied into the merged namespace, as ListMerged,
// and the ids of those whose copy is damaged.
func (s *Store) MergedPage(ctx context.Context, pageSize int, pageToken string) (Page, error) {
	return s.list(ctx, MergedNamespace(s.tenant), "", pageSize, pageToken)
}

const tokenPrefix = "t1:"

func encodeToken(lastID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(tokenPrefix + lastID))
}

func decodeToken(tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	id, ok := strings.CutPrefix(string(b), tokenPrefix)
	if err != nil || !ok || !ValidID(id) {
		return "", fmt.Errorf("%w: malformed page token %s", ErrInvalid, quoteID(tok))
	}
	return id, nil
}

// list returns a page of the records in ns, of session sessionID (any when empty).
func (s *Store) list(ctx context.Context, ns, sessionID string, pageSize int, pageToken string) (Page, error) {
	switch {
	case pageSize < 0:
		return Page{}, fmt.Errorf("%w: page size %d is negative", ErrInvalid, pageSize)
	case pageSize == 0:
		pageSize = DefaultPageSize
	case pageSize > MaxPageSize:
		pageSize = MaxPageSize
	}
	after, err := decodeToken(pageToken)
	if err != nil {
		return Page{}, err
	}
	req := storage.ScanRequest{Namespace: ns, Prefix: recordPrefix, Limit: pageSize}
	if after != "" {
		req.StartAfter = recordKey(after)
	}
	res, err := s.st.Scan(ctx, req)
	if err != nil {
		return Page{}, fmt.Errorf("list traces: %w", err)
	}
	p := Page{Records: make([]Record, 0, len(res.Items))}
	merged := ns == MergedNamespace(s.tenant)
	last := ""
	for _, kv := range res.Items {
		id := string(bytes.TrimPrefix(kv.Key, recordPrefix))
		if ValidID(id) {
			last = id
		}
		rec, err := parseRecord(kv.Value)
		if err != nil || rec.ID != id || sessionID != "" && rec.SessionID != sessionID {
			p.Damaged = append(p.Damaged, id)
			continue
		}
		if merged {
			// The shared record is read by everyone, and nothing else checks a copy while
			// its trace's session lives: a copy whose record or data its chain does not
			// vouch for is not served. One signed by another host's key that this one does
			// not trust is intact as far as this host can tell (its chain and record agree).
			in, err := s.inspect(ctx, location{traceID: id, sessionID: rec.SessionID, ns: ns}, false)
			if err != nil {
				return Page{}, fmt.Errorf("list traces: %w", err)
			}
			if in.problem != nil && in.foreign.signed == "" {
				p.Damaged = append(p.Damaged, id)
				continue
			}
		}
		p.Records = append(p.Records, rec)
	}
	if res.More && last != "" {
		p.Next = encodeToken(last)
	}
	return p, nil
}

// inspection is what inspect found about a trace.
type inspection struct {
	// rec is the record derived from the chain as far as it verifies.
	rec Record
	// entries and ckpts are the stored entries and valid checkpoints (up to rec.Length), in
	// order, when inspect was asked to keep them.
	entries, ckpts [][]byte
	// signed is the length the latest valid checkpoint covers.
	signed int64
	// problem is the first thing that does not verify, nil if everything does.
	problem error
	// foreign is the checkpoint signed by another key than the host's that is the problem.
	foreign foreignKeyError
	// signedBy is the fingerprint of the key of the latest valid checkpoint, and signers
	// the fingerprints of the keys of all of them (kept only with the checkpoints).
	signedBy string
	signers  map[string]bool
}

// inspect reads a trace's record, chain and checkpoints and verifies all of them. Failures to
// read are returned as errors; what does not verify is reported in problem.
func (s *Store) inspect(ctx context.Context, loc location, keep bool) (inspection, error) {
	var in inspection
	stored, _, err := s.loadRecord(ctx, loc)
	if errors.Is(err, ErrCorrupt) {
		in.problem = err
		return in, nil
	}
	if err != nil {
		return in, err
	}
	r := newReplayer(loc.traceID, loc.sessionID, stored.Data)
	var hashes []string
	matched := false
	err = s.scanEntries(ctx, loc, 0, func(i int64, raw []byte) error {
		if _, err := r.add(raw); err != nil {
			return &chainError{fmt.Errorf("entry %d: %w", i, err)}
		}
		hashes = append(hashes, r.rec.Head)
		if keep {
			in.entries = append(in.entries, raw)
		}
		if r.rec.Length == stored.Length {
			if err := compareDerived(stored, r.rec); err != nil {
				return &chainError{err}
			}
			matched = true
		}
		return nil
	})
	in.rec = r.rec
	var ce *chainError
	switch {
	case errors.As(err, &ce):
		in.problem = ce.err
		return in, nil
	case err != nil:
		return in, err
	case !matched:
		in.problem = fmt.Errorf("record says provenance_length %d but the chain has %d entries", stored.Length, r.rec.Length)
		return in, nil
	}
	n := r.rec.Length
	err = s.scan(ctx, loc.ns, ckptPrefix(loc.traceID), nil, false, func(key, raw []byte) error {
		c, err := parseCheckpoint(raw, s.keys)
		if fk := (foreignKeyError{}); errors.As(err, &fk) {
			// Another host's, most likely: say which, if storage knows it.
			fk.node, _ = s.keyNode(ctx, fk.signed)
			in.foreign, err = fk, fk
		}
		if err != nil {
			return &chainError{fmt.Errorf("checkpoint %s: %w", key, err)}
		}
		switch {
		case !bytes.Equal(key, ckptKey(loc.traceID, c.Length)):
			return &chainError{fmt.Errorf("checkpoint of length %d is stored under key %s", c.Length, key)}
		case c.TraceID != loc.traceID || c.SessionID != loc.sessionID:
			return &chainError{fmt.Errorf("checkpoint %s is of trace %s in session %s", key, c.TraceID, c.SessionID)}
		case c.Length > n:
			// Either an append landed after the chain was read, or entries were removed.
			_, present, err := s.st.Get(ctx, loc.ns, entryKey(loc.traceID, n))
			if err != nil {
				return fmt.Errorf("read entry %d: %w", n, err)
			}
			if !present {
				return &chainError{fmt.Errorf("checkpoint %d signs a chain of %d entries, but only %d are stored: entries were removed", c.Length, c.Length, n)}
			}
			return nil
		case c.Head != hashes[c.Length-1]:
			return &chainError{fmt.Errorf("checkpoint %d signs head %s, but entry %d has hash %s", c.Length, c.Head, c.Length-1, hashes[c.Length-1])}
		}
		in.signed, in.signedBy = c.Length, c.Key
		if keep {
			in.ckpts = append(in.ckpts, raw)
			if in.signers == nil {
				in.signers = map[string]bool{}
			}
			in.signers[c.Key] = true
		}
		return nil
	})
	if errors.As(err, &ce) {
		in.problem = ce.err
		return in, nil
	}
	if err == nil && in.signed < n {
		// Every write stores its entries with the checkpoint of the length they make, in one
		// batch: entries no checkpoint covers were written by someone without the host key
		// (or their checkpoint was removed), and the host cannot vouch for them.
		in.problem = unsignedError(in.signed, n)
	}
	return in, err
}

// unsignedError reports that entries signed to n-1 of a chain are covered by no checkpoint.
func unsignedError(signed, n int64) error {
	which := fmt.Sprintf("entries %d to %d are", signed, n-1)
	if signed == n-1 {
		which = fmt.Sprintf("entry %d is", signed)
	}
	return fmt.Errorf("%s not covered by a checkpoint signed by the host key or a key it trusts (the latest covers %d entries): they were written behind the host's back, or their checkpoint was removed", which, signed)
}

// Verify recomputes a trace's chain from storage: every entry's hash and link, the data hash
// in its "created" entry, the record against the chain, and every checkpoint's signature
// against the host key (or a key it trusts) and the chain. It returns an error only when it cannot read; what does
// not verify is reported in the result.
//
// A merged trace whose session was purged (PurgeSession) is verified in the shared record:
// its copy there, with the entries and checkpoints copied with it.
func (s *Store) Verify(ctx context.Context, traceID string) (VerifyResult, error) {
	var in inspection
	err := s.read(ctx, traceID, func(loc location) error {
		var err error
		in, err = s.inspect(ctx, loc, false)
		return err
	})
	if err != nil {
		return VerifyResult{}, err
	}
	res := VerifyResult{Valid: in.problem == nil, Length: in.rec.Length, Head: in.rec.Head, SignedLength: in.signed, SignedBy: in.signedBy}
	if in.signedBy != "" && in.signedBy != s.keys.own {
		// Which node storage says signs with it, for the reader: the key is trusted by
		// configuration, whatever storage says.
		if res.SignerNode, err = s.keyNode(ctx, in.signedBy); err != nil {
			return VerifyResult{}, err
		}
	}
	if in.problem != nil {
		res.Error = in.problem.Error()
		res.ForeignKey, res.ForeignNode = in.foreign.signed, in.foreign.node
	}
	return res, nil
}

// snapshot is a verified, consistent copy of a trace: the record derived from exactly the
// entries listed, and checkpoints up to their length, the last of which covers all of them.
type snapshot struct {
	rec            Record
	entries, ckpts [][]byte
	// signers are the fingerprints of the keys that signed ckpts.
	signers map[string]bool
}

// snapshot reads and verifies a trace, whose latest checkpoint must cover its whole chain.
func (s *Store) snapshot(ctx context.Context, loc location) (snapshot, error) {
	in, err := s.inspect(ctx, loc, true)
	if err != nil {
		return snapshot{}, err
	}
	if in.problem != nil {
		// Entries no checkpoint covers are a problem too: the host never signs a chain it
		// did not write (see inspect).
		return snapshot{}, fmt.Errorf("%w: trace %s: %w", ErrCorrupt, loc.traceID, in.problem)
	}
	return snapshot{rec: in.rec, entries: in.entries, ckpts: in.ckpts, signers: in.signers}, nil
}

// CopyToMerged copies a merged trace (status StatusMerged, see SetStatus) with its chain and
// checkpoints into MergedNamespace, where ListMerged lists it, and returns the copied record.
// The copy is a verified snapshot; a trace whose provenance does not verify is refused with
// ErrCorrupt. Copying again replaces the copy with a newer snapshot; an older snapshot,
// copied concurrently, leaves a newer copy as it is.
func (s *Store) CopyToMerged(ctx context.Context, traceID string) (Record, error) {
	loc, err := s.locate(ctx, traceID)
	if err != nil {
		return Record{}, err
	}
	snap, err := s.snapshot(ctx, loc)
	if err != nil {
		return Record{}, err
	}
	if snap.rec.Status != StatusMerged {
		return Record{}, fmt.Errorf("%w: trace %s is %s; only a merged trace is copied into the shared record", ErrInvalid, traceID, snap.rec.Status)
	}
	rraw, err := canonicalJSON(snap.rec)
	if err != nil {
		return Record{}, fmt.Errorf("encode trace record: %w", err)
	}
	ns := MergedNamespace(s.tenant)
	var ops []storage.Op
	size := 0
	// The last batch ends with assertions (see below); every batch keeps room for them.
	next := entryKey(traceID, int64(len(snap.entries)))
	guards := []storage.Op{{Kind: storage.OpAssertAbsent, Key: next}}
	if one, err := s.batchNamespaces(ctx); err != nil {
		return Record{}, fmt.Errorf("copy trace %s to the merged record: %w", traceID, err)
	} else if one {
		guards = append(guards, storage.Op{Kind: storage.OpAssertAbsent, Namespace: loc.ns, Key: next})
	}
	guardBytes := len(guards) * len(next)
	add := func(key, value []byte) error {
		if len(ops) == storage.MaxBatchOps-len(guards) || size+len(key)+len(value)+guardBytes > storage.MaxBatchBytes {
			if err := s.st.Batch(ctx, ns, ops); err != nil {
				return fmt.Errorf("copy trace %s to the merged record: %w", traceID, err)
			}
			ops, size = nil, 0
		}
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: key, Value: value})
		size += len(key) + len(value)
		return nil
	}
	for i, raw := range snap.entries {
		if err := add(entryKey(traceID, int64(i)), raw); err != nil {
			return Record{}, err
		}
	}
	for _, raw := range snap.ckpts {
		var c Checkpoint
		if err := json.Unmarshal(raw, &c); err != nil {
			return Record{}, fmt.Errorf("%w: trace %s: %v", ErrCorrupt, traceID, err)
		}
		if err := add(ckptKey(traceID, c.Length), raw); err != nil {
			return Record{}, err
		}
	}
	// The record goes last, so a listed copy is always complete.
	if err := add(recordKey(traceID), rraw); err != nil {
		return Record{}, err
	}
	// A copy of a longer chain (a newer snapshot, copied meanwhile by another caller) holds
	// the entry after this snapshot's: this older copy must not replace its record. The
	// entries and checkpoints written before are the same in both. Where the backend takes
	// ops in several namespaces, the copy also asserts that the trace's own chain has not
	// grown since the snapshot: a trace withdrawn from the shared record meanwhile (its copy
	// removed, then a flag and its new status appended) is not copied back by a snapshot
	// taken while it was merged.
	ops = append(ops, guards...)
	if err := s.st.Batch(ctx, ns, ops); err != nil && !errors.Is(err, storage.ErrConditionFailed) {
		return Record{}, fmt.Errorf("copy trace %s to the merged record: %w", traceID, err)
	}
	return snap.rec, nil
}

// InMerged reports whether MergedNamespace holds a copy of the trace.
func (s *Store) InMerged(ctx context.Context, traceID string) (bool, error) {
	_, ok, err := s.MergedLength(ctx, traceID)
	return ok, err
}

// MergedLength reports whether MergedNamespace holds a copy of the trace and, if so, the
// length of the chain its record reflects: shorter than the trace's own when the copy is
// stale (a flag written to the merged trace whose copy could not be replaced).
func (s *Store) MergedLength(ctx context.Context, traceID string) (int64, bool, error) {
	if !ValidID(traceID) {
		return 0, false, fmt.Errorf("%w: %s", ErrNotFound, quoteID(traceID))
	}
	raw, ok, err := s.st.Get(ctx, MergedNamespace(s.tenant), recordKey(traceID))
	if err != nil || !ok {
		if err != nil {
			err = fmt.Errorf("look trace %s up in the merged record: %w", traceID, err)
		}
		return 0, false, err
	}
	var rec Record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return 0, true, fmt.Errorf("%w: the merged copy of trace %s: %v", ErrCorrupt, traceID, err)
	}
	return rec.Length, true, nil
}

// RemoveFromMerged removes a trace's copy from MergedNamespace (record first, so a copy
// is never listed incomplete), for a trace withdrawn from the shared record. A trace
// with no copy there is not an error. The copy of a trace whose session was purged
// (PurgeSession) is all that is left of it: it is refused with ErrNotFound, as the trace
// is (writes to it are too), and stays.
func (s *Store) RemoveFromMerged(ctx context.Context, traceID string) error {
	if !ValidID(traceID) {
		return fmt.Errorf("%w: %s", ErrNotFound, quoteID(traceID))
	}
	loc, err := s.locate(ctx, traceID)
	if err == nil {
		_, _, err = s.loadRecord(ctx, loc)
	}
	if errors.Is(err, ErrNotFound) {
		if in, ierr := s.InMerged(ctx, traceID); ierr != nil || !in {
			return ierr
		}
		return fmt.Errorf("%w: %s: its session was purged, and its copy in the shared record, all that is left of it, stays", ErrNotFound, traceID)
	}
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("remove trace %s from the merged record: %w", traceID, err)
	}
	ns := MergedNamespace(s.tenant)
	if _, err := s.st.Delete(ctx, ns, recordKey(traceID)); err != nil {
		return fmt.Errorf("remove trace %s from the merged record: %w", traceID, err)
	}
	for _, prefix := range [][]byte{entryPrefix(traceID), ckptPrefix(traceID)} {
		var ops []storage.Op
		err := s.scan(ctx, ns, prefix, nil, true, func(key, _ []byte) error {
			ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: append([]byte(nil), key...)})
			if len(ops) == storage.MaxBatchOps {
				err := s.st.Batch(ctx, ns, ops)
				ops = nil
				return err
			}
			return nil
		})
		if err == nil && len(ops) > 0 {
			err = s.st.Batch(ctx, ns, ops)
		}
		if err != nil {
			return fmt.Errorf("remove trace %s from the merged record: %w", traceID, err)
		}
	}
	return nil
}
