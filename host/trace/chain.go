package trace

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/limitgraph/limit/sdk/governance"
)

// chainHash is the hash of an entry whose canonical JSON without "hash" is body.
func chainHash(prev string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// dataHash is the hex SHA-256 of canonical JSON.
func dataHash(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

// sealEntry computes e.Hash and returns the entry's canonical JSON, as stored.
func sealEntry(e *Entry) ([]byte, error) {
	e.Hash = ""
	body, err := entryJSON(e)
	if err != nil {
		return nil, fmt.Errorf("encode entry: %w", err)
	}
	e.Hash = chainHash(e.PrevHash, body)
	return insertMember(body, "hash", e.Hash), nil
}

// insertMember returns the canonical JSON object obj with the string member name: value
// added in its sorted place. obj must be canonical, name plain ASCII and absent from obj.
// It saves encoding and canonicalizing a struct a second time to add its hash or signature.
func insertMember(obj []byte, name, value string) []byte {
	member := `"` + name + `":"` + value + `"`
	i := 1 // the first member, after '{'
	for i < len(obj)-1 {
		end := skipString(obj, i) // obj[i] is the '"' that opens the member's name
		if compareUTF16(obj[i+1:end-1], []byte(name)) > 0 {
			break
		}
		i = skipValue(obj, end+1) + 1 // past ':' and the value, then past ',' or to '}'
	}
	out := make([]byte, 0, len(obj)+len(member)+1)
	switch {
	case len(obj) == 2: // {}
		out = append(append(append(out, '{'), member...), '}')
	case i >= len(obj)-1: // after the last member
		out = append(append(append(append(out, obj[:len(obj)-1]...), ','), member...), '}')
	default:
		out = append(append(append(append(out, obj[:i]...), member...), ','), obj[i:]...)
	}
	return out
}

// removeMember returns the canonical JSON object obj without its top-level member name (plain
// ASCII), and whether obj had it. Removing a member keeps an object canonical.
func removeMember(obj []byte, name string) ([]byte, bool) {
	i := 1
	for i < len(obj)-1 {
		end := skipString(obj, i)
		next := skipValue(obj, end+1) // the ',' or '}' after the value
		if string(obj[i+1:end-1]) == name {
			out := make([]byte, 0, len(obj))
			switch {
			case obj[next] == ',': // drop the member and the comma after it
				out = append(append(out, obj[:i]...), obj[next+1:]...)
			case i > 1: // the last member: drop the comma before it
				out = append(append(out, obj[:i-1]...), obj[next:]...)
			default: // the only member
				out = append(out, '{', '}')
			}
			return out, true
		}
		i = next + 1
	}
	return obj, false
}

// skipString returns the index just past the JSON string that starts at obj[i].
func skipString(obj []byte, i int) int {
	for i++; i < len(obj); i++ {
		switch obj[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(obj)
}

// skipValue returns the index just past the JSON value that starts at obj[i].
func skipValue(obj []byte, i int) int {
	depth := 0
	for i < len(obj) {
		switch obj[i] {
		case '"':
			i = skipString(obj, i)
			if depth == 0 {
				return i
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',':
			if depth == 0 {
				return i
			}
		}
		i++
	}
	return i
}

// entryJSON returns the canonical JSON of e, as canonicalJSON(e) does, but without
// reflection and a second pass for the common case: every string valid UTF-8, Data already
// canonical (as the store makes it), a timestamp in years 0–9999 and an index JSON numbers
// hold exactly. Anything else takes the general path.
func entryJSON(e *Entry) ([]byte, error) {
	if !exactInt(e.Index) || !jsonYear(e.Timestamp) || !validUTF8(e.TraceID, e.SessionID, e.Kind, e.Agent, e.PrevHash, e.Hash) {
		return canonicalJSON(e)
	}
	data := []byte(e.Data)
	if len(data) == 0 {
		data = []byte("null")
	}
	o := newCanonObject(256 + len(data))
	o.str("agent", e.Agent)
	o.raw("data", data)
	if e.Hash != "" {
		o.str("hash", e.Hash)
	}
	o.int("index", e.Index)
	o.str("kind", e.Kind)
	o.str("prev_hash", e.PrevHash)
	o.str("session_id", e.SessionID)
	o.time("timestamp", e.Timestamp)
	o.str("trace_id", e.TraceID)
	return o.end(), nil
}

// recordJSON returns the canonical JSON of r, as canonicalJSON(r) does, directly in the
// common case (as entryJSON): strings valid UTF-8, Data canonical and not empty (as the
// store makes it), no flags, timestamps in years 0–9999, a length JSON numbers hold
// exactly. The record repeats the trace's data, so a create no longer parses it again.
func recordJSON(r *Record) ([]byte, error) {
	if len(r.Flags) > 0 || len(r.Data) == 0 || !exactInt(r.Length) || !jsonYear(r.CreatedAt) || !jsonYear(r.UpdatedAt) ||
		!validUTF8(r.ID, r.SessionID, r.Tenant, r.Kind, string(r.Status), r.Head) {
		return canonicalJSON(r)
	}
	flags := []byte("[]")
	if r.Flags == nil {
		flags = []byte("null")
	}
	o := newCanonObject(320 + len(r.Data))
	o.time("created_at", r.CreatedAt)
	o.raw("data", r.Data)
	o.raw("flags", flags)
	o.str("id", r.ID)
	o.str("kind", r.Kind)
	o.str("provenance_head", r.Head)
	o.int("provenance_length", r.Length)
	o.str("session_id", r.SessionID)
	o.str("status", string(r.Status))
	o.str("tenant", r.Tenant)
	o.time("updated_at", r.UpdatedAt)
	return o.end(), nil
}

// checkpointJSON returns the canonical JSON of c, as canonicalJSON(c) does, directly in
// the common case (see entryJSON).
func checkpointJSON(c *Checkpoint) ([]byte, error) {
	if !exactInt(c.Length) || !jsonYear(c.Timestamp) || !validUTF8(c.SessionID, c.TraceID, c.Head, c.Key, c.Signature) {
		return canonicalJSON(c)
	}
	o := newCanonObject(256)
	o.str("head", c.Head)
	o.str("key", c.Key)
	o.int("length", c.Length)
	o.str("session_id", c.SessionID)
	if c.Signature != "" {
		o.str("signature", c.Signature)
	}
	o.time("timestamp", c.Timestamp)
	o.str("trace_id", c.TraceID)
	return o.end(), nil
}

// createdInfoJSON returns the canonical JSON of the data of a "created" entry, as
// canonicalJSON(i) does, directly when its strings are valid UTF-8.
func createdInfoJSON(i *createdInfo) ([]byte, error) {
	if !validUTF8(i.Kind, i.Tenant, i.DataSHA256) {
		return canonicalJSON(i)
	}
	o := newCanonObject(64 + len(i.Kind) + len(i.Tenant) + len(i.DataSHA256))
	o.str("data_sha256", i.DataSHA256)
	o.str("kind", i.Kind)
	o.str("tenant", i.Tenant)
	return o.end(), nil
}

// parsePlainCreatedInfo reads the data of a "created" entry into i when it is in the form
// createdInfoJSON writes for strings of printable ASCII without '"' and '\\' (as the host's
// own are), and reports whether it could; i is unchanged when it could not. Such data is
// what decodeExact accepts, with the same result, without going through encoding/json.
func parsePlainCreatedInfo(raw []byte, i *createdInfo) bool {
	rest := raw
	var vals [3]string
	for n, prefix := range [3]string{`{"data_sha256":"`, `","kind":"`, `","tenant":"`} {
		var ok bool
		if rest, ok = bytes.CutPrefix(rest, []byte(prefix)); !ok {
			return false
		}
		end := 0
		for end < len(rest) && rest[end] != '"' {
			if c := rest[end]; c < 0x20 || c > 0x7e || c == '\\' {
				return false
			}
			end++
		}
		vals[n], rest = string(rest[:end]), rest[end:]
	}
	if string(rest) != `"}` {
		return false
	}
	*i = createdInfo{DataSHA256: vals[0], Kind: vals[1], Tenant: vals[2]}
	return true
}

// jsonYear tells whether encoding/json can encode t (years 0–9999), as the direct
// encoders assume.
func jsonYear(t time.Time) bool {
	y := t.Year()
	return y >= 0 && y <= 9999
}

// exactInt tells whether n is a non-negative integer JSON numbers hold exactly.
func exactInt(n int64) bool { return n >= 0 && n <= 1<<53 }

// validUTF8 tells whether every string is valid UTF-8 (encoding/json replaces what is
// not, which the direct encoders do not).
func validUTF8(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

// canonObject writes a JSON object for the direct encoders: the caller adds the members
// in RFC 8785's order (names sorted by their UTF-16 code units), with names that need no
// escaping.
type canonObject struct {
	out bytes.Buffer
}

func newCanonObject(size int) *canonObject {
	o := &canonObject{}
	o.out.Grow(size)
	return o
}

func (o *canonObject) name(k string) {
	if o.out.Len() == 0 {
		o.out.WriteString(`{"`)
	} else {
		o.out.WriteString(`,"`)
	}
	o.out.WriteString(k)
	o.out.WriteString(`":`)
}

func (o *canonObject) str(k, v string)        { o.name(k); writeString(&o.out, []byte(v)) }
func (o *canonObject) raw(k string, v []byte) { o.name(k); o.out.Write(v) }
func (o *canonObject) int(k string, v int64) {
	o.name(k)
	o.out.Write(strconv.AppendInt(o.out.AvailableBuffer(), v, 10))
}
func (o *canonObject) time(k string, t time.Time) {
	o.name(k)
	var b [40]byte // room for any time of years 0–9999, so formatting allocates nothing
	writeString(&o.out, t.AppendFormat(b[:0], time.RFC3339Nano))
}

// end closes the object and returns it.
func (o *canonObject) end() []byte {
	o.out.WriteByte('}')
	return o.out.Bytes()
}

// decodeExact decodes raw into v, refusing unknown members, and checks that v encodes back to
// exactly raw in canonical form: then v says everything raw says and nothing else, and a hash
// or signature computed from v is one over raw.
func decodeExact(raw []byte, v any) error {
	if i, ok := v.(*createdInfo); ok && parsePlainCreatedInfo(raw, i) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	var again []byte
	var err error
	if e, ok := v.(*Entry); ok {
		// entryJSON copies Data as it is: check that it is canonical itself.
		var data []byte
		if data, err = Canonicalize(e.Data); err == nil && !bytes.Equal(data, e.Data) {
			return errors.New("data not in canonical form (RFC 8785)")
		}
		if err == nil {
			again, err = entryJSON(e)
		}
	} else if c, ok := v.(*Checkpoint); ok {
		again, err = checkpointJSON(c)
	} else if i, ok := v.(*createdInfo); ok {
		again, err = createdInfoJSON(i)
	} else {
		again, err = canonicalJSON(v)
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(again, raw) {
		return errors.New("not in canonical form (RFC 8785) or holds members twice or in another spelling")
	}
	return nil
}

// parseEntry decodes a stored or exported entry and computes its hash from its bytes.
func parseEntry(raw []byte) (Entry, string, error) {
	var e Entry
	if err := decodeExact(raw, &e); err != nil {
		return Entry{}, "", fmt.Errorf("malformed entry: %w", err)
	}
	// raw is exactly the canonical form of e, so without "hash" it is what the hash covers.
	body, ok := removeMember(raw, "hash")
	if !ok {
		return Entry{}, "", errors.New("malformed entry: no hash")
	}
	return e, chainHash(e.PrevHash, body), nil
}

// errForeignEntry marks an entry that is intact but belongs to another trace or session.
var errForeignEntry = errors.New("entry of another chain")

// checkEntry checks that e, whose content hashes to h, is entry index of the chain of trace
// traceID in session sessionID following a head of prev, and that its hash is right. The hash
// is checked first: an entry that fails only the later checks is intact but in the wrong place.
func checkEntry(e Entry, h, traceID, sessionID string, index int64, prev string) error {
	switch {
	case h != e.Hash:
		return fmt.Errorf("hash %s does not match the entry's content (recomputed %s)", e.Hash, h)
	case e.TraceID != traceID:
		return fmt.Errorf("%w: entry belongs to trace %q, want %q", errForeignEntry, e.TraceID, traceID)
	case e.SessionID != sessionID:
		return fmt.Errorf("%w: entry belongs to session %q, want %q", errForeignEntry, e.SessionID, sessionID)
	case e.Index != index:
		return fmt.Errorf("entry has index %d, want %d (an entry is missing or out of order)", e.Index, index)
	case e.PrevHash != prev:
		return fmt.Errorf("prev_hash %s does not match the hash %s of the entry before", e.PrevHash, prev)
	case !validKind(e.Kind):
		return fmt.Errorf("entry kind %q is not valid", e.Kind)
	}
	return nil
}

// replayer rebuilds a record from its chain, entry by entry, checking every link.
type replayer struct {
	rec      Record
	dataHash string
}

// newReplayer starts the replay of the chain of a trace whose data (canonical) is data.
func newReplayer(traceID, sessionID string, data json.RawMessage) *replayer {
	return &replayer{
		rec:      Record{ID: traceID, SessionID: sessionID, Data: data, Flags: []Flag{}},
		dataHash: dataHash(data),
	}
}

// resume continues the replay of a chain from a record already derived from its first
// rec.Length entries.
func resume(rec Record) *replayer {
	return &replayer{rec: rec}
}

// add checks the next entry, in its stored form, and applies it to the record.
func (r *replayer) add(raw []byte) (Entry, error) {
	e, h, err := parseEntry(raw)
	if err != nil {
		return Entry{}, err
	}
	if err := r.check(e, h); err != nil {
		return Entry{}, err
	}
	return e, r.apply(e)
}

// addEntry checks e, just sealed by this process (sealEntry computed e.Hash from its
// content), as the next entry and applies it to the record.
func (r *replayer) addEntry(e Entry) error {
	if err := r.check(e, e.Hash); err != nil {
		return err
	}
	return r.apply(e)
}

// check checks e, whose content hashes to h, as the next entry.
func (r *replayer) check(e Entry, h string) error {
	prev := r.rec.Head
	if r.rec.Length == 0 {
		prev = GenesisHash
	}
	return checkEntry(e, h, r.rec.ID, r.rec.SessionID, r.rec.Length, prev)
}

// apply changes the record as entry e says.
func (r *replayer) apply(e Entry) error {
	rec := &r.rec
	if (e.Index == 0) != (e.Kind == KindCreated) {
		return fmt.Errorf("entry %d has kind %q: the first entry, and only it, must be %q", e.Index, e.Kind, KindCreated)
	}
	switch e.Kind {
	case KindCreated:
		var info createdInfo
		if err := decodeExact(e.Data, &info); err != nil {
			return fmt.Errorf("data of the %q entry: %w", KindCreated, err)
		}
		if r.dataHash == "" || info.DataSHA256 != r.dataHash {
			return fmt.Errorf("%w: the trace's data hashes to %s, not to the SHA-256 %s its %q entry holds", errDataMismatch, r.dataHash, info.DataSHA256, KindCreated)
		}
		rec.Kind, rec.Tenant, rec.Status, rec.CreatedAt = info.Kind, info.Tenant, StatusActive, e.Timestamp
		rec.Flags = []Flag{}
	case KindFlagged:
		var f Flag
		if err := decodeExact(e.Data, &f); err != nil {
			return fmt.Errorf("data of the %q entry: %w", KindFlagged, err)
		}
		if err := validateFlag(f); err != nil {
			return fmt.Errorf("data of the %q entry: %w", KindFlagged, err)
		}
		rec.Flags = append(rec.Flags, f)
	case KindQuarantined, KindMerged, KindReactivated:
		var info statusInfo
		if err := decodeExact(e.Data, &info); err != nil {
			return fmt.Errorf("data of the %q entry: %w", e.Kind, err)
		}
		if statusKind[info.Status] != e.Kind {
			return fmt.Errorf("a %q entry cannot set status %q", e.Kind, info.Status)
		}
		rec.Status = info.Status
	}
	rec.Length = e.Index + 1
	rec.Head = e.Hash
	rec.UpdatedAt = e.Timestamp
	return nil
}

// compareDerived checks that the stored record says what its chain says.
func compareDerived(stored, derived Record) error {
	field := func(name string, got, want any) error {
		return fmt.Errorf("record says %s %v but its chain says %v", name, got, want)
	}
	switch {
	case stored.ID != derived.ID:
		return field("id", stored.ID, derived.ID)
	case stored.SessionID != derived.SessionID:
		return field("session_id", stored.SessionID, derived.SessionID)
	case stored.Length != derived.Length:
		return field("provenance_length", stored.Length, derived.Length)
	case stored.Head != derived.Head:
		return field("provenance_head", stored.Head, derived.Head)
	case stored.Tenant != derived.Tenant:
		return field("tenant", stored.Tenant, derived.Tenant)
	case stored.Kind != derived.Kind:
		return field("kind", stored.Kind, derived.Kind)
	case stored.Status != derived.Status:
		return field("status", stored.Status, derived.Status)
	case !stored.CreatedAt.Equal(derived.CreatedAt):
		return field("created_at", stored.CreatedAt, derived.CreatedAt)
	case !stored.UpdatedAt.Equal(derived.UpdatedAt):
		return field("updated_at", stored.UpdatedAt, derived.UpdatedAt)
	}
	a, errA := canonicalJSON(stored.Flags)
	b, errB := canonicalJSON(derived.Flags)
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		return fmt.Errorf("record's flags %s differ from its chain's %s", a, b)
	}
	return nil
}

// parseRecord decodes a stored or exported record.
func parseRecord(raw []byte) (Record, error) {
	var r Record
	if err := decodeExact(raw, &r); err != nil {
		return Record{}, fmt.Errorf("malformed trace record: %w", err)
	}
	if !ValidID(r.ID) || !ValidID(r.SessionID) {
		return Record{}, fmt.Errorf("trace record has a malformed id %q or session id %q", r.ID, r.SessionID)
	}
	if len(r.Data) == 0 || r.Data[0] != '{' {
		return Record{}, errors.New("trace record's data is not a JSON object")
	}
	return r, nil
}

// foreignKeyError is a checkpoint signed by a key that is neither the host's nor one it
// trusts; it is ErrForeignKey. node is the host that storage records signing with that key,
// when one does.
type foreignKeyError struct{ signed, host, node string }

func (e foreignKeyError) Error() string {
	if e.node != "" {
		return fmt.Sprintf("checkpoint is signed by key %s (node %s's), not by the host key %s nor by a key it trusts", e.signed, e.node, e.host)
	}
	return fmt.Sprintf("checkpoint is signed by key %s, not by the host key %s nor by a key it trusts", e.signed, e.host)
}

func (e foreignKeyError) Is(target error) bool { return target == ErrForeignKey }

// parseCheckpoint decodes a checkpoint and checks its signature with the key of keys it
// names.
func parseCheckpoint(raw []byte, keys keyring) (Checkpoint, error) {
	var c Checkpoint
	if err := decodeExact(raw, &c); err != nil {
		return Checkpoint{}, fmt.Errorf("malformed checkpoint: %w", err)
	}
	pub, ok := keys.get(c.Key)
	if !ok {
		return Checkpoint{}, foreignKeyError{signed: c.Key, host: keys.own}
	}
	sig, err := hex.DecodeString(c.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Checkpoint{}, errors.New("checkpoint signature is not a hex Ed25519 signature")
	}
	// raw is exactly the canonical form of c, so without "signature" it is what was signed.
	msg, _ := removeMember(raw, "signature")
	if !ed25519.Verify(pub, msg, sig) {
		return Checkpoint{}, errors.New("checkpoint signature does not verify")
	}
	if c.Length < 1 {
		return Checkpoint{}, fmt.Errorf("checkpoint has length %d", c.Length)
	}
	return c, nil
}

// signCheckpoint fills in c.Key and c.Signature and returns the checkpoint's canonical JSON.
func signCheckpoint(k *Key, c *Checkpoint) ([]byte, error) {
	c.Key = k.Fingerprint()
	c.Signature = ""
	msg, err := checkpointJSON(c)
	if err != nil {
		return nil, fmt.Errorf("encode checkpoint: %w", err)
	}
	c.Signature = k.sign(msg)
	return insertMember(msg, "signature", c.Signature), nil
}

// validName checks a kind, agent-like name: valid UTF-8, 1 to MaxNameSize bytes, no control
// characters.
func validName(s string) bool {
	if s == "" || len(s) > MaxNameSize || !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// validKind checks the kind of a trace or an entry: 1 to 64 of [a-z0-9_.:-], starting with a
// letter.
func validKind(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// validateAgent checks an agent name, which may be empty.
func validateAgent(agent string) error {
	if agent != "" && !validName(agent) {
		return fmt.Errorf("%w: agent must be at most %d bytes of printable UTF-8", ErrInvalid, MaxNameSize)
	}
	return nil
}

// validateFlag checks a flag's name, severity, sizes and, when given, stage, score and
// location.
func validateFlag(f Flag) error {
	switch {
	case !governance.ValidFlag(f.Flag):
		return fmt.Errorf("%w: unknown flag %q (known: %v)", ErrInvalid, f.Flag, governance.Flags)
	case f.Severity < 1 || f.Severity > 10:
		return fmt.Errorf("%w: flag severity %d is outside 1-10", ErrInvalid, f.Severity)
	case len(f.Reason) > MaxReasonSize || !utf8.ValidString(f.Reason):
		return fmt.Errorf("%w: flag reason must be at most %d bytes of UTF-8", ErrInvalid, MaxReasonSize)
	case f.RuleID != "" && !validName(f.RuleID):
		return fmt.Errorf("%w: flag rule_id must be at most %d bytes of printable UTF-8", ErrInvalid, MaxNameSize)
	case f.Timestamp.IsZero():
		return fmt.Errorf("%w: flag has no timestamp", ErrInvalid)
	case f.Timestamp.Year() < 1 || f.Timestamp.Year() > 9999:
		return fmt.Errorf("%w: flag timestamp %v is out of range", ErrInvalid, f.Timestamp)
	case f.Stage != "" && f.Stage != StagePre && f.Stage != StagePost:
		return fmt.Errorf("%w: flag stage %q: want %q, %q or none", ErrInvalid, f.Stage, StagePre, StagePost)
	case math.IsNaN(f.Score) || math.IsInf(f.Score, 0):
		return fmt.Errorf("%w: flag score %v is not a finite number", ErrInvalid, f.Score)
	case validateAgent(f.SetBy) != nil:
		return fmt.Errorf("flag set_by: %w", validateAgent(f.SetBy))
	case f.Location != nil:
		return f.Location.Validate()
	}
	return nil
}

// Validate checks a location's line, column and offsets, with errors wrapping ErrInvalid.
func (l Location) Validate() error {
	switch {
	case l.Line < 0 || int64(l.Line) > MaxLine || l.Column < 0 || int64(l.Column) > MaxLine:
		return fmt.Errorf("%w: flag location line %d, column %d: want 1 to %d, or 0 for none", ErrInvalid, l.Line, l.Column, int64(MaxLine))
	case l.Column > 0 && l.Line == 0:
		return fmt.Errorf("%w: flag location gives column %d but no line", ErrInvalid, l.Column)
	case l.Start < 0 || int64(l.Start) > MaxOffset || l.End < 0 || int64(l.End) > MaxOffset:
		return fmt.Errorf("%w: flag location offsets %d-%d: want 0 to %d", ErrInvalid, l.Start, l.End, int64(MaxOffset))
	case l.End < l.Start:
		return fmt.Errorf("%w: flag location ends (byte %d) before it starts (byte %d)", ErrInvalid, l.End, l.Start)
	case l.Line == 0 && l.End == l.Start:
		return fmt.Errorf("%w: flag location gives neither a line nor a span (end > start)", ErrInvalid)
	}
	return nil
}

// canonicalData checks and canonicalizes data given to Create (object required) or Append
// (any JSON value; empty means null).
func canonicalData(data json.RawMessage, object bool) (json.RawMessage, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		if object {
			return json.RawMessage("{}"), nil
		}
		return json.RawMessage("null"), nil
	}
	c, err := canonicalize(data, true)
	if err != nil {
		return nil, fmt.Errorf("%w: data: %v", ErrInvalid, err)
	}
	if object && c[0] != '{' {
		return nil, fmt.Errorf("%w: data must be a JSON object", ErrInvalid)
	}
	if len(c) > MaxDataSize {
		return nil, fmt.Errorf("%w: data is %d bytes in canonical form, the limit is %d", ErrInvalid, len(c), MaxDataSize)
	}
	if d := nesting(c); d > MaxDataNesting {
		return nil, fmt.Errorf("%w: data nests %d levels deep, the limit is %d", ErrInvalid, d, MaxDataNesting)
	}
	return c, nil
}

// nesting returns how deeply arrays and objects nest in canonical JSON c.
func nesting(c []byte) int {
	depth, most, inString := 0, 0, false
	for i := 0; i < len(c); i++ {
		switch b := c[i]; {
		case inString && b == '\\':
			i++
		case b == '"':
			inString = !inString
		case inString:
		case b == '{' || b == '[':
			depth++
			most = max(most, depth)
		case b == '}' || b == ']':
			depth--
		}
	}
	return most
}
