package trace

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/limitgraph/limit/sdk/storage"
)

// Update is a set of changes made to a trace in one atomic storage write (see Apply): Entries
// are appended in order, then one "flagged" entry per flag, then, if Status is set and
// differs from the trace's status, the status entry; Extra ops are written in the same batch.
type Update struct {
	// Entries are appended in order. Only their Kind, Agent and Data are read: an empty Agent
	// means the agent the update is applied by, empty Data means null. Kinds that change the
	// record (ReservedKind) are refused: use Flags and Status.
	Entries []Entry
	// Flags are attached in order, each by a "flagged" entry; a zero Timestamp means now.
	Flags []Flag
	// Status, if not empty, is the status the trace moves to by a "quarantined", "merged"
	// or "reactivated" entry holding Reason. A trace already in it gets no entry.
	Status Status
	// Reason is the reason of the status change; it needs a Status.
	Reason string
	// By names the principal whose request made the status change ("operator",
	// "user:NAME"), recorded in its entry; it needs a Status.
	By string
	// Extra are other writes made in the same batch, in the trace's session namespace
	// (SessionNamespace): storage.OpPut and storage.OpDelete only, and no key may start with
	// one of the package's prefixes trace/, prov/ and ckpt/.
	Extra []storage.Op
	// At is when the update happened: its entries, and its flags without a Timestamp, carry
	// it. Zero means now.
	At time.Time
	// UnlessMerged refuses the update with ErrFinal when the trace is merged (checked
	// against the chain the update would extend, so a merge racing it is seen).
	UnlessMerged bool
	// OnlyIfMerged refuses the update with ErrNotMerged unless the trace is merged (checked
	// the same way): a change of a merged trace (a flag refreshing its shared copy, or its
	// withdrawal) that another host or request withdrew meanwhile is not made.
	OnlyIfMerged bool
	// Check, if set, is called with the record the update would extend, the newest this
	// store knows (again after each race lost to another writer, on any host); an error
	// from it refuses the update and is returned as it is. A decision taken on a record
	// read earlier (a merge its flags allow) holds this way on the record it is made on.
	Check func(Record) error
}

// reservedPrefixes are the key prefixes this package owns in a session namespace.
var reservedPrefixes = [][]byte{recordPrefix, []byte("prov/"), []byte("ckpt/")}

// change is an Update checked and put in canonical form, ready to be applied at any point
// of a chain.
type change struct {
	agent        string
	at           time.Time // zero: now
	entries      []Entry   // Kind, Agent, canonical Data
	unlessMerged bool
	onlyIfMerged bool
	check        func(Record) error
	flags        []json.RawMessage
	status       Status
	statusData   json.RawMessage
	extra        []storage.Op
}

// prepare checks u, applied by agent, and puts it in canonical form.
func (s *Store) prepare(agent string, u Update) (*change, error) {
	if err := validateAgent(agent); err != nil {
		return nil, err
	}
	c := &change{agent: agent, status: u.Status, unlessMerged: u.UnlessMerged, onlyIfMerged: u.OnlyIfMerged, check: u.Check}
	if !u.At.IsZero() {
		c.at = u.At.UTC()
	}
	// which names an entry or flag in an error, by its position if there are several.
	which := func(what string, i, n int) string {
		if n == 1 {
			return what
		}
		return fmt.Sprintf("%s %d", what, i)
	}
	for i, in := range u.Entries {
		w := which("entry", i, len(u.Entries))
		switch {
		case !validKind(in.Kind):
			return nil, fmt.Errorf("%w: %s kind %q: want 1 to 64 of [a-z0-9_.:-], starting with a letter", ErrInvalid, w, in.Kind)
		case ReservedKind(in.Kind):
			return nil, fmt.Errorf("%w: %s kind %q is written by the host only", ErrInvalid, w, in.Kind)
		}
		if err := validateAgent(in.Agent); err != nil {
			return nil, fmt.Errorf("%s: %w", w, err)
		}
		data, err := canonicalData(in.Data, false)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", w, err)
		}
		a := in.Agent
		if a == "" {
			a = agent
		}
		c.entries = append(c.entries, Entry{Kind: in.Kind, Agent: a, Data: data})
	}
	if len(u.Flags) > MaxFlags {
		return nil, fmt.Errorf("%w: %d flags, a trace carries at most %d", ErrInvalid, len(u.Flags), MaxFlags)
	}
	for i, f := range u.Flags {
		if f.Timestamp.IsZero() {
			f.Timestamp = c.at
		}
		if f.Timestamp.IsZero() {
			f.Timestamp = s.timestamp()
		}
		f.Timestamp = f.Timestamp.UTC()
		if err := validateFlag(f); err != nil {
			return nil, fmt.Errorf("%s: %w", which("flag", i, len(u.Flags)), err)
		}
		data, err := canonicalJSON(f)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", which("flag", i, len(u.Flags)), err)
		}
		c.flags = append(c.flags, data)
	}
	switch {
	case u.Status != "" && !u.Status.Valid():
		return nil, fmt.Errorf("%w: unknown status %q (want %s, %s or %s)", ErrInvalid, u.Status, StatusActive, StatusQuarantined, StatusMerged)
	case u.Status == "" && u.Reason != "":
		return nil, fmt.Errorf("%w: a reason is given but no status to change to", ErrInvalid)
	case len(u.Reason) > MaxReasonSize || !utf8.ValidString(u.Reason):
		return nil, fmt.Errorf("%w: reason must be at most %d bytes of UTF-8", ErrInvalid, MaxReasonSize)
	case u.Status == "" && u.By != "":
		return nil, fmt.Errorf("%w: a principal is given but no status to change to", ErrInvalid)
	}
	if err := validateAgent(u.By); err != nil {
		return nil, fmt.Errorf("status change's principal: %w", err)
	}
	if u.Status != "" {
		data, err := canonicalJSON(statusInfo{Status: u.Status, Reason: u.Reason, By: u.By})
		if err != nil {
			return nil, fmt.Errorf("encode status change: %w", err)
		}
		c.statusData = data
	}
	for i, op := range u.Extra {
		if op.Kind != storage.OpPut && op.Kind != storage.OpDelete {
			return nil, fmt.Errorf("%w: extra operation %d: only puts and deletes may ride along with an update", ErrInvalid, i)
		}
		if err := storage.ValidateKey(op.Key); err != nil {
			return nil, fmt.Errorf("%w: extra operation %d: %v", ErrInvalid, i, err)
		}
		for _, p := range reservedPrefixes {
			if bytes.HasPrefix(op.Key, p) {
				return nil, fmt.Errorf("%w: extra operation %d: key %q: the prefix %s belongs to the trace store", ErrInvalid, i, op.Key, p)
			}
		}
		if op.Kind == storage.OpDelete {
			op.Value = nil
		} else if err := storage.ValidateValue(op.Value); err != nil {
			return nil, fmt.Errorf("%w: extra operation %d: %v", ErrInvalid, i, err)
		}
		c.extra = append(c.extra, op)
	}
	return c, nil
}

// builder makes the entries that extend a chain, replaying each onto the record.
type builder struct {
	s   *Store
	loc location
	r   *replayer
	// entries are the entries made, raws their stored form.
	entries []Entry
	raws    [][]byte
	// at is the timestamp of the entries being made; zero means now.
	at time.Time
}

// newBuilder starts extending the chain at loc whose record, derived from its whole chain,
// is tip.
func (s *Store) newBuilder(loc location, tip Record) *builder {
	tip.Flags = slices.Clone(tip.Flags) // the replay appends to them
	return &builder{s: s, loc: loc, r: resume(tip)}
}

// add makes the next entry and applies it to the record.
func (b *builder) add(kind, agent string, data json.RawMessage) error {
	rec := &b.r.rec
	prev := rec.Head
	if rec.Length == 0 {
		prev = GenesisHash
	}
	ts := b.at
	if ts.IsZero() {
		ts = b.s.timestamp()
	}
	e := Entry{
		TraceID: b.loc.traceID, SessionID: b.loc.sessionID, Index: rec.Length, Kind: kind, Agent: agent,
		Data: data, Timestamp: ts, PrevHash: prev,
	}
	raw, err := sealEntry(&e)
	if err != nil {
		return err
	}
	if len(raw) > storage.MaxValueSize {
		return fmt.Errorf("%w: entry %d is %d bytes, the limit is %d", ErrInvalid, e.Index, len(raw), storage.MaxValueSize)
	}
	if err := b.r.addEntry(e); err != nil {
		return fmt.Errorf("%w: trace %s: own entry %d: %v", ErrCorrupt, b.loc.traceID, e.Index, err)
	}
	b.entries = append(b.entries, e)
	b.raws = append(b.raws, raw)
	return nil
}

// apply makes the entries c asks for, given the record as replayed so far.
func (b *builder) apply(c *change) error {
	if c.unlessMerged && b.r.rec.Status == StatusMerged {
		return fmt.Errorf("%w: trace %s is in the shared record as merged; flag it to withdraw it", ErrFinal, b.loc.traceID)
	}
	if c.onlyIfMerged && b.r.rec.Status != StatusMerged {
		return fmt.Errorf("%w: trace %s is %s", ErrNotMerged, b.loc.traceID, b.r.rec.Status)
	}
	if c.check != nil {
		if err := c.check(b.r.rec); err != nil {
			return err
		}
	}
	b.at = c.at
	defer func() { b.at = time.Time{} }()
	for _, e := range c.entries {
		if err := b.add(e.Kind, e.Agent, e.Data); err != nil {
			return err
		}
	}
	if n := len(b.r.rec.Flags); n+len(c.flags) > MaxFlags {
		return fmt.Errorf("%w: trace %s has %d flags; %d more would exceed the limit of %d", ErrInvalid, b.loc.traceID, n, len(c.flags), MaxFlags)
	}
	for _, f := range c.flags {
		if err := b.add(KindFlagged, c.agent, f); err != nil {
			return err
		}
	}
	if c.status != "" && b.r.rec.Status != c.status {
		if err := b.add(statusKind[c.status], c.agent, c.statusData); err != nil {
			return err
		}
	}
	return nil
}

// ops returns the batch that stores the entries made from index from on, the checkpoint of
// the chain they end, the record after them, and extra. A conditional batch (for an existing
// chain) asserts that entry from is still free, so the batch lands only on the chain it was
// built for, and that no checkpoint covers the new length yet (one would mean that entries
// were removed: never overwrite the evidence).
func (b *builder) ops(from int64, extra []storage.Op, conditional bool) ([]storage.Op, error) {
	loc, rec := b.loc, b.r.rec
	rraw, err := recordJSON(&rec)
	if err != nil {
		return nil, fmt.Errorf("encode trace record: %w", err)
	}
	if len(rraw) > storage.MaxValueSize {
		return nil, fmt.Errorf("%w: trace record would be %d bytes, the limit is %d", ErrInvalid, len(rraw), storage.MaxValueSize)
	}
	ops := make([]storage.Op, 0, len(b.raws)+len(extra)+4)
	if conditional {
		ops = append(ops, storage.Op{Kind: storage.OpAssertAbsent, Key: entryKey(loc.traceID, from)})
		if len(b.raws) > 0 {
			ops = append(ops, storage.Op{Kind: storage.OpAssertAbsent, Key: ckptKey(loc.traceID, rec.Length)})
		}
	}
	for i, raw := range b.raws {
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: entryKey(loc.traceID, from+int64(i)), Value: raw})
	}
	if len(b.raws) > 0 {
		c := Checkpoint{SessionID: loc.sessionID, TraceID: loc.traceID, Length: rec.Length, Head: rec.Head, Timestamp: b.s.timestamp()}
		craw, err := signCheckpoint(b.s.key, &c)
		if err != nil {
			return nil, err
		}
		ops = append(ops, storage.Op{Kind: storage.OpPut, Key: ckptKey(loc.traceID, rec.Length), Value: craw})
	}
	ops = append(ops, storage.Op{Kind: storage.OpPut, Key: recordKey(loc.traceID), Value: rraw})
	ops = append(ops, extra...)
	if err := storage.ValidateBatch(loc.ns, ops); err != nil {
		return nil, fmt.Errorf("%w: trace %s: the update does not fit in one storage batch: %v", ErrInvalid, loc.traceID, err)
	}
	return ops, nil
}

// Apply makes the changes u describes to a trace, by agent, and returns the record after
// them with the entries appended (none when there was nothing to append: an empty update, or
// only a status the trace already has). Everything is one storage batch, written once:
// the entries, a signed checkpoint of the new length, the record and u.Extra are applied
// together or not at all. A refused update (ErrInvalid, ErrNotFound, ErrCorrupt) writes
// nothing.
//
// The batch asserts that the next index is still free. When another writer (in this process
// or another sharing the storage) took it first, Apply reads what was appended, re-checks
// the update against it (the status, the flag limit) and tries again at the next index.
func (s *Store) Apply(ctx context.Context, traceID, agent string, u Update) (Record, []Entry, error) {
	c, err := s.prepare(agent, u)
	if err != nil {
		return Record{}, nil, err
	}
	loc, err := s.locate(ctx, traceID)
	if err != nil {
		return Record{}, nil, err
	}
	return s.apply(ctx, loc, c)
}

// apply applies c to the chain at loc; see Apply.
func (s *Store) apply(ctx context.Context, loc location, c *change) (Record, []Entry, error) {
	// Writers of one chain in this process queue here instead of all racing for every index.
	unlock := s.claims.Lock(loc.traceID)
	defer unlock()
	// The stored record normally reflects the whole chain, since every write stores both
	// at once, so the first attempt builds on it without reading the chain. If it lags (a
	// crash in a host version that wrote them one by one), the next index is taken, the
	// batch's assertion fails, and the loop catches up from the chain. Either way a write
	// extends only a chain that a checkpoint signed by the host covers (checkSigned).
	tip, _, err := s.loadRecord(ctx, loc)
	if err != nil {
		return Record{}, nil, err
	}
	caughtUp := false
	for attempt := 0; ; attempt++ {
		if attempt == maxAppendAttempts {
			return Record{}, nil, fmt.Errorf("%w: trace %s: lost the race for the next index %d times", ErrConflict, loc.traceID, attempt)
		}
		b := s.newBuilder(loc, tip)
		if err := b.apply(c); err != nil {
			// Refusals hold on a lagging record too: flags only grow.
			return tip, nil, err
		}
		if len(b.entries) == 0 && len(c.extra) == 0 {
			if caughtUp {
				return tip, nil, nil
			}
			// Nothing to write, judging by the record; make sure it is not behind.
			if tip, err = s.catchUp(ctx, loc, tip); err != nil {
				return Record{}, nil, fmt.Errorf("update trace %s: %w", loc.traceID, err)
			}
			caughtUp = true
			continue
		}
		if err := s.checkSigned(ctx, loc, tip); err != nil {
			return Record{}, nil, err
		}
		ops, err := b.ops(tip.Length, c.extra, true)
		if err != nil {
			return tip, nil, err
		}
		err = s.group.write(ctx, loc.ns, ops)
		if err == nil {
			s.heads.add(loc.traceID, b.r.rec.Head)
			return b.r.rec, b.entries, nil
		}
		if !errors.Is(err, storage.ErrConditionFailed) {
			return Record{}, nil, fmt.Errorf("update trace %s: %w", loc.traceID, err)
		}
		// Someone appended first (or the record lags): follow the entries and try after them.
		up, err := s.catchUp(ctx, loc, tip)
		if err != nil {
			return Record{}, nil, fmt.Errorf("update trace %s: %w", loc.traceID, err)
		}
		caughtUp = true
		if up.Length == tip.Length && len(b.entries) > 0 {
			// Nothing was appended, so it is the checkpoint that is in the way.
			_, present, err := s.st.Get(ctx, loc.ns, ckptKey(loc.traceID, b.r.rec.Length))
			if err != nil {
				return Record{}, nil, fmt.Errorf("update trace %s: read checkpoint %d: %w", loc.traceID, b.r.rec.Length, err)
			}
			if present {
				return Record{}, nil, fmt.Errorf("%w: trace %s: a checkpoint signs a chain of %d entries, but only %d are stored: entries were removed", ErrCorrupt, loc.traceID, b.r.rec.Length, tip.Length)
			}
		}
		tip = up
	}
}

// checkSigned makes sure, before a write extends the chain tip describes and signs the
// longer chain, that the host can vouch for every entry of it: the whole chain verifies
// (each entry re-hashed from the first, the data against the digest its "created" entry
// holds, the record against the chain) and checkpoints signed by the host key, or a key it
// trusts (Options.TrustedKeys), match it, the latest covering all of it. Entries written or
// changed behind the host's back (an entry's content edited with its "hash" kept, the data
// edited, entries added with a record to match) must not get the host's signature that
// way. A head this store signed or checked itself since it started is known to be covered
// and costs nothing; any other costs reading and checking the chain (a few entries and
// checkpoints: the first write to each trace after a start).
func (s *Store) checkSigned(ctx context.Context, loc location, tip Record) error {
	if head, ok := s.heads.get(loc.traceID); ok && head == tip.Head {
		return nil
	}
	in, err := s.inspect(ctx, loc, false)
	if err != nil {
		return fmt.Errorf("update trace %s: %w", loc.traceID, err)
	}
	if in.problem != nil {
		return fmt.Errorf("%w: trace %s: %w; the host will not sign a longer chain", ErrCorrupt, loc.traceID, in.problem)
	}
	if in.rec.Length != tip.Length || in.rec.Head != tip.Head {
		// Another writer appended since tip was read: the batch's assertion fails, and the
		// next attempt checks the chain it then extends.
		return nil
	}
	s.heads.add(loc.traceID, tip.Head)
	return nil
}

// CreateWith stores a new trace as Create does and applies u to it in the same write, and
// returns the record with the entries u appended (after the "created" entry).
func (s *Store) CreateWith(ctx context.Context, sessionID, kind string, data json.RawMessage, agent string, u Update) (Record, []Entry, error) {
	return s.CreateAll(ctx, Creation{SessionID: sessionID, Kind: kind, Data: data, Agent: agent, Updates: []Update{u}})
}

// Creation is a trace to create with CreateAll.
type Creation struct {
	// ID is the new trace's id, made by NewID beforehand (so that work can refer to the
	// trace before it is stored); empty means a new one. A given ID that is already a
	// trace's makes CreateAll fail with ErrExists and write nothing.
	ID        string
	SessionID string
	Kind      string
	// Data is the trace's data: a JSON object; empty means {}.
	Data  json.RawMessage
	Agent string
	// At is when the trace was created, the "created" entry's timestamp; zero means now.
	At time.Time
	// Updates are applied in order after the "created" entry, as Apply would one after
	// the other, but in the same write.
	Updates []Update
}

// CreateAll stores a new trace with the updates of c applied, and returns the record with
// the entries the updates appended (after the "created" entry). It costs one storage write
// when the backend takes batch ops in several namespaces (storage.CapBatchNamespaces: the
// index entry rides along), else two: the index entry first, then everything else.
func (s *Store) CreateAll(ctx context.Context, cr Creation) (Record, []Entry, error) {
	sessionID, kind, agent := cr.SessionID, cr.Kind, cr.Agent
	if !ValidID(sessionID) {
		return Record{}, nil, fmt.Errorf("%w: %s is not a session id", ErrInvalid, quoteID(sessionID))
	}
	if !validKind(kind) {
		return Record{}, nil, fmt.Errorf("%w: trace kind %q: want 1 to 64 of [a-z0-9_.:-], starting with a letter", ErrInvalid, kind)
	}
	if err := validateAgent(agent); err != nil {
		return Record{}, nil, err
	}
	id, given := cr.ID, cr.ID != ""
	if !given {
		id = NewID()
	} else if !ValidID(id) {
		return Record{}, nil, fmt.Errorf("%w: %s is not a trace id", ErrInvalid, quoteID(id))
	}
	cdata, err := canonicalData(cr.Data, true)
	if err != nil {
		return Record{}, nil, err
	}
	changes := make([]*change, len(cr.Updates))
	for i, u := range cr.Updates {
		if changes[i], err = s.prepare(agent, u); err != nil {
			return Record{}, nil, err
		}
	}
	loc := s.sessionLocation(id, sessionID)
	b := &builder{s: s, loc: loc, r: newReplayer(id, sessionID, cdata)}
	// The replayer hashed the data already: the created entry holds that hash.
	info, err := createdInfoJSON(&createdInfo{Kind: kind, Tenant: s.tenant, DataSHA256: b.r.dataHash})
	if err != nil {
		return Record{}, nil, fmt.Errorf("encode created entry: %w", err)
	}
	if !cr.At.IsZero() {
		b.at = cr.At.UTC()
	}
	if err := b.add(KindCreated, agent, info); err != nil {
		return Record{}, nil, err
	}
	var extra []storage.Op
	for _, c := range changes {
		if err := b.apply(c); err != nil {
			return Record{}, nil, err
		}
		extra = append(extra, c.extra...)
	}
	// A new trace's keys are written by nobody else: the batch needs no assertion (and
	// may share a storage write with other writers), unless the caller chose the id.
	ops, err := b.ops(0, extra, false)
	if err != nil {
		return Record{}, nil, err
	}
	indexNS := IndexNamespace(s.tenant)
	index := []storage.Op{{Kind: storage.OpPut, Key: recordKey(id), Value: []byte(sessionID), Namespace: indexNS}}
	if given {
		index = append([]storage.Op{{Kind: storage.OpAssertAbsent, Key: recordKey(id), Namespace: indexNS}}, index...)
	}
	exists := func(err error) error {
		if errors.Is(err, storage.ErrConditionFailed) {
			return fmt.Errorf("%w: trace %s", ErrExists, id)
		}
		return fmt.Errorf("create trace: %w", err)
	}
	// guarded is the trace's batch alone, for a chosen id whose index entry may be there
	// already: it asserts that no chain exists, so of two creates of the id, one stores the
	// trace and the other fails with ErrExists instead of writing its chain over it.
	guarded := func() []storage.Op {
		return append([]storage.Op{{Kind: storage.OpAssertAbsent, Key: entryKey(id, 0)}}, ops...)
	}
	one, err := s.batchNamespaces(ctx)
	if err != nil {
		return Record{}, nil, fmt.Errorf("create trace: %w", err)
	}
	if one {
		// The index entry and the trace in one atomic write.
		err = s.group.write(ctx, loc.ns, append(index, ops...))
	} else {
		// Two writes, the index entry first: a crash before the batch leaves an index
		// entry whose record is missing, which reads as not found; never a record no id
		// leads to.
		for i := range index {
			index[i].Namespace = ""
		}
		if err = s.group.write(ctx, indexNS, index); err == nil {
			batch := ops
			if given {
				// Another create of the id may find the index entry without a trace
				// and store its own (see orphanIndex).
				batch = guarded()
			}
			if err := s.group.write(ctx, loc.ns, batch); err != nil {
				return Record{}, nil, exists(err)
			}
		}
	}
	if err != nil && given && errors.Is(err, storage.ErrConditionFailed) {
		// The index entry was there. If no trace was stored with it (the trace's write of
		// a create of the id failed, or may have, as when an execution's early create
		// did), the id is no trace's yet: store the trace now, or the id stays taken by
		// nothing, refused to creates and not found by updates.
		orphan, oerr := s.orphanIndex(ctx, loc)
		if oerr != nil {
			return Record{}, nil, fmt.Errorf("create trace: %w", oerr)
		}
		if orphan {
			err = s.group.write(ctx, loc.ns, guarded())
		}
	}
	if err != nil {
		return Record{}, nil, exists(err)
	}
	s.sessions.add(id, sessionID)
	s.heads.add(id, b.r.rec.Head)
	return b.r.rec, b.entries[1:], nil
}

// orphanIndex tells whether the index entry of the trace at loc names its session while
// no record of it is stored there: a create of the id wrote its index entry, and its trace
// was not (yet) written.
func (s *Store) orphanIndex(ctx context.Context, loc location) (bool, error) {
	v, ok, err := s.st.Get(ctx, IndexNamespace(s.tenant), recordKey(loc.traceID))
	if err != nil || !ok || string(v) != loc.sessionID {
		return false, err
	}
	_, ok, err = s.st.Get(ctx, loc.ns, recordKey(loc.traceID))
	return err == nil && !ok, err
}
