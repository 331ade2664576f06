// Package trace stores traces (records of what a session did) with their provenance: an
// append-only chain of entries per trace, each hashed over the previous one, with checkpoints
// signed by the host's Ed25519 key, exportable as a bundle that VerifyBundle checks offline.
//
// # Storage layout
//
// Everything lives in a storage.Storage (any backend), under a tenant:
//
//	IndexNamespace(tenant)                trace/<traceID>            → session id (plain bytes)
//	                                      provenance-key/<node>      → fingerprint of the key
//	                                                                   host <node> signs with
//	SessionNamespace(tenant, sessionID)   trace/<traceID>            → Record (canonical JSON)
//	                                      prov/<traceID>/<%020d i>   → Entry i (canonical JSON)
//	                                      ckpt/<traceID>/<%020d n>   → Checkpoint of length n
//	MergedNamespace(tenant)               the same three kinds of keys, copied by CopyToMerged
//
// The key prefixes trace/, prov/, ckpt/ and provenance-key/ belong to this package in those namespaces; other
// packages may keep their own keys there under other prefixes.
//
// # Hash chain
//
// Entry i holds prev_hash, the hash of entry i-1 (64 zeros for entry 0), and
//
//	hash = lower-case hex SHA-256( prev_hash || JCS(entry without its "hash" member) )
//
// where prev_hash is the 64 ASCII hex characters and JCS is RFC 8785 canonical JSON
// (Canonicalize). Entry 0 is always of kind "created"; its data holds the SHA-256 of the
// canonical JSON of the trace's data, so the data is covered by the chain. Every other field
// of a Record is derived from its chain (status and flags from the flagged, quarantined,
// merged and reactivated entries; timestamps from the first and last entry), so a record is
// a cache that can always be rebuilt, and a verifier checks it against the chain.
//
// Whenever a chain grows the host signs a Checkpoint {session_id, trace_id, length, head,
// timestamp, key}: signature = hex Ed25519 over JCS(checkpoint without "signature"). One
// checkpoint is signed per write, for the length the chain has after it; a write that appends
// several entries (Apply) leaves no checkpoint for the lengths in between. A verifier needs
// only the latest checkpoint to cover the whole chain; every stored one must match the chain.
//
// # Concurrency and crashes
//
// Every change to an existing trace (Apply, and Append, AddFlag and SetStatus, which call it)
// is one conditional storage batch in the session namespace, written once:
//
//	assert absent  prov/<traceID>/<i>        the next index is still free
//	assert absent  ckpt/<traceID>/<n>        no checkpoint signs the new length n yet
//	put            prov/<traceID>/<i..n-1>   the new entries
//	put            ckpt/<traceID>/<n>        the checkpoint of the new length
//	put            trace/<traceID>           the record derived from entries 0..n-1
//	put/delete     the caller's own keys (Update.Extra)
//
// The first assertion makes appends from any number of goroutines or host processes sharing
// one database never fork a chain: a loser reads the winner's entries and retries after
// them. It also guards the record: when it holds, the chain has exactly i entries, so the
// record written (derived from those i entries and the new ones) is newer than any record
// derived from the chain before, and no assertion on the record's own bytes is needed (one
// would only add conflicts with readers catching it up). The second assertion holds unless
// entries were removed behind the store's back, and keeps such a chain from being extended
// over the checkpoint that proves the removal.
//
// Since a batch is atomic, a crash leaves the entries, checkpoint and record of a change all
// written or all absent. A record that lags its chain is caught up by the next read, but
// entries no checkpoint covers (written without the host key, or a crash in a version that
// wrote entries and checkpoints separately: the two look alike) do not verify, are not
// exported, and the store refuses to extend their chain. Create writes the index entry
// first, then one batch; a crash between them leaves an index entry whose record is missing,
// which reads as not found (and which a create of the same chosen id completes).
package trace

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/limitgraph/limit/internal/clip"
)

// DefaultTenant is the tenant of everything until tenants and tokens exist.
const DefaultTenant = "default"

// GenesisHash is the prev_hash of the first entry of every chain: 64 zeros.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Status is the state of a trace.
type Status string

// Trace states.
const (
	StatusActive      Status = "active"
	StatusQuarantined Status = "quarantined"
	StatusMerged      Status = "merged"
)

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	return s == StatusActive || s == StatusQuarantined || s == StatusMerged
}

// Kinds of traces (Record.Kind) the host creates.
const (
	// TraceCustom is a trace created through POST /v1/traces.
	TraceCustom = "custom"
	// TraceExecution is the trace of an execution.
	TraceExecution = "execution"
)

// Kinds of provenance entries the host appends. Create, AddFlag and SetStatus (Update.Flags
// and Update.Status) write the first five, which change the record; Append and
// Update.Entries refuse them (see ReservedKind).
const (
	KindCreated     = "created"
	KindFlagged     = "flagged"
	KindQuarantined = "quarantined"
	KindMerged      = "merged"
	KindReactivated = "reactivated"
	// KindExecuted is appended by the execution path; it changes nothing in the record.
	KindExecuted = "executed"
)

// ReservedKind reports whether kind is written only by the store itself (Create, AddFlag,
// SetStatus) because replaying it changes the record.
func ReservedKind(kind string) bool {
	switch kind {
	case KindCreated, KindFlagged, KindQuarantined, KindMerged, KindReactivated:
		return true
	}
	return false
}

// statusKind is the entry kind SetStatus appends to move a trace to a status.
var statusKind = map[Status]string{
	StatusActive:      KindReactivated,
	StatusQuarantined: KindQuarantined,
	StatusMerged:      KindMerged,
}

// Limits on what the store accepts.
const (
	// MaxDataSize bounds the canonical JSON of a trace's data and of an entry's data.
	MaxDataSize = 8 << 20
	// MaxDataNesting bounds how deeply a trace's or entry's data may nest.
	MaxDataNesting = 512
	// MaxFlags is the most flags one trace can carry.
	MaxFlags = 1000
	// MaxNameSize bounds kinds, agents, rule ids and tenant names.
	MaxNameSize = 256
	// MaxReasonSize bounds the reason of a flag or a status change.
	MaxReasonSize = 4096
	// MaxLine bounds a flag location's line and column (the protocol's uint32).
	MaxLine = 1<<32 - 1
	// MaxOffset bounds a flag location's byte offsets: 2^53, the largest integer a JSON
	// number holds exactly, so that the canonical form of a flag never rounds one.
	MaxOffset = 1 << 53
	// DefaultPageSize is the page size of a listing that names none.
	DefaultPageSize = 50
	// MaxPageSize is the largest page a listing returns.
	MaxPageSize = 1000
)

// Errors the store returns, wrapped with details; test them with errors.Is.
var (
	// ErrNotFound: the trace does not exist, or its id is malformed.
	ErrNotFound = errors.New("trace not found")
	// ErrInvalid: the request itself is wrong (bad kind, flag, status, data, page token, ...).
	ErrInvalid = errors.New("invalid request")
	// ErrCorrupt: what storage holds for the trace does not verify, so the store will not
	// extend, copy or export it; Verify says what is wrong.
	ErrCorrupt = errors.New("provenance does not verify")
	// ErrConflict: an append lost the race for the next index too many times in a row.
	ErrConflict = errors.New("too many concurrent appends")
	// ErrExists: a trace with the id given to CreateAll exists already.
	ErrExists = errors.New("trace exists already")
	// ErrFinal: the trace is merged, so its chain is final: it takes flags and a change of
	// status (a withdrawal from the shared record), not other entries.
	ErrFinal = errors.New("trace is merged: its chain is final")
	// ErrNotMerged: an update asked to be made only while the trace is merged
	// (Update.OnlyIfMerged), and it no longer is.
	ErrNotMerged = errors.New("trace is not merged")
	// ErrForeignKey: a checkpoint is signed by another key than the host's and the keys it
	// trusts (Options.TrustedKeys): another host's, sharing the storage, or its own before
	// its key file was replaced (see Store.ClaimKey). It comes wrapped together with
	// ErrCorrupt.
	ErrForeignKey = errors.New("signed by another key than the host's")
)

// Record is a trace as stored and as the API shows it.
type Record struct {
	ID        string `json:"id"`
	SessionID string `json:"session_id"`
	Tenant    string `json:"tenant"`
	// Kind is TraceCustom, TraceExecution or another kind the host chose.
	Kind   string `json:"kind"`
	Status Status `json:"status"`
	// Data is a JSON object, in canonical form (RFC 8785).
	Data  json.RawMessage `json:"data"`
	Flags []Flag          `json:"flags"`
	// CreatedAt is the timestamp of the "created" entry, UpdatedAt that of the last entry.
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Length is the number of provenance entries the record reflects, Head the hash of the
	// last of them.
	Length int64  `json:"provenance_length"`
	Head   string `json:"provenance_head"`
}

// Flag is a governance finding attached to a trace.
type Flag struct {
	// Flag is one of the names in sdk/governance (governance.FlagJailbreak, ...).
	Flag string `json:"flag"`
	// Severity from 1 (low) to 10 (critical).
	Severity int    `json:"severity"`
	Reason   string `json:"reason"`
	// RuleID names the rule that raised the flag; empty for a flag set by hand.
	RuleID       string    `json:"rule_id"`
	AutoDetected bool      `json:"auto_detected"`
	Timestamp    time.Time `json:"timestamp"`
	// Stage, Score and Location say, for a flag a rule raised, when the rule ran (StagePre
	// on the input, StagePost on the output), how sure it was and where in the evaluated
	// content it looked. All are optional and left out of the JSON when absent (Score 0
	// means none), so a flag without them is stored, hashed and shown as before they
	// existed.
	Stage    string    `json:"stage,omitempty"`
	Score    float64   `json:"score,omitempty"`
	Location *Location `json:"location,omitempty"`
	// SetBy is who set a flag by hand through the API, as the token's principal
	// ("operator", "user:NAME"); empty for a rule's flag (and for flags from before it).
	SetBy string `json:"set_by,omitempty"`
}

// Stages a flag's Stage may name: a rule that evaluated the execution's input, or its
// output (sdk/governance.StagePre and StagePost).
const (
	StagePre  = "pre"
	StagePost = "post"
)

// Location points into the content a rule evaluated. Line and Column are 1-based (0: not
// given; Column counts bytes and needs a Line); Start and End are the byte offsets of the
// matched span [Start, End), a span only when End > Start. A location gives a line, a
// span or both.
type Location struct {
	Line   int `json:"line,omitempty"`
	Column int `json:"column,omitempty"`
	Start  int `json:"start"`
	End    int `json:"end"`
}

// Entry is one link of a trace's provenance chain.
type Entry struct {
	TraceID   string `json:"trace_id"`
	SessionID string `json:"session_id"`
	Index     int64  `json:"index"`
	Kind      string `json:"kind"`
	Agent     string `json:"agent"`
	// Data is any JSON value, in canonical form; null when the appender gave none.
	Data      json.RawMessage `json:"data"`
	Timestamp time.Time       `json:"timestamp"`
	PrevHash  string          `json:"prev_hash"`
	// Hash is computed over everything above (see the package documentation).
	Hash string `json:"hash,omitempty"`
}

// Checkpoint is the host's signed statement that a chain had Length entries ending in Head.
type Checkpoint struct {
	SessionID string    `json:"session_id"`
	TraceID   string    `json:"trace_id"`
	Length    int64     `json:"length"`
	Head      string    `json:"head"`
	Timestamp time.Time `json:"timestamp"`
	// Key is the Fingerprint of the signing key.
	Key string `json:"key"`
	// Signature is the hex Ed25519 signature over the checkpoint's canonical JSON without
	// this member.
	Signature string `json:"signature,omitempty"`
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	// Valid tells whether the whole chain, the record and every checkpoint verify.
	Valid bool `json:"valid"`
	// Length and Head describe the chain as far as it verifies.
	Length int64  `json:"length"`
	Head   string `json:"head"`
	// SignedLength is the length covered by the latest valid checkpoint. Every write stores
	// its entries with their checkpoint, so when it trails Length the entries beyond it were
	// written without the host key (or their checkpoint was removed) and Valid is false.
	SignedLength int64 `json:"signed_length"`
	// SignedBy is the fingerprint of the key that signed that checkpoint: the host's own,
	// or one it trusts (host.trusted_keys). SignerNode is the node storage records
	// signing with it when it is not the host's own key, if any: a name for the reader,
	// not what makes the key trusted.
	SignedBy   string `json:"signed_by,omitempty"`
	SignerNode string `json:"signer_node,omitempty"`
	// Error says what is wrong when Valid is false, and is empty when it is true (the
	// field is always there, as the API documents it).
	Error string `json:"error"`
	// ForeignKey, when set, is the fingerprint of the key a checkpoint is signed with
	// instead of the host's or one it trusts (Error says so): the chain is not known to be
	// broken, but only a host holding or trusting that key (another host sharing the
	// storage, or this one before its key file was replaced) can verify it. ForeignNode is the node storage records signing
	// with that key, if any.
	ForeignKey  string `json:"foreign_key,omitempty"`
	ForeignNode string `json:"foreign_node,omitempty"`
}

// createdInfo is the data of a chain's "created" entry.
type createdInfo struct {
	Kind       string `json:"kind"`
	Tenant     string `json:"tenant"`
	DataSHA256 string `json:"data_sha256"`
}

// statusInfo is the data of a quarantined, merged or reactivated entry.
type statusInfo struct {
	Status Status `json:"status"`
	Reason string `json:"reason"`
	// By is the principal whose request made the change (Update.By), when one did.
	By string `json:"by,omitempty"`
}

// idEntropy makes ids from the operating system's random source, increasing within one
// millisecond so ids made by one process sort in creation order.
var idEntropy = &ulid.LockedMonotonicReader{MonotonicReader: ulid.Monotonic(rand.Reader, 0)}

// NewID returns a new ULID (26 characters, Crockford base32, upper case), the form of trace
// ids; session ids must have the same form. ULIDs sort by creation time.
func NewID() string {
	id, err := ulid.New(ulid.Now(), idEntropy)
	if err != nil {
		// The entropy ran over within one millisecond (after some 2^48 ids): give up the
		// order within that millisecond, not the id.
		id, _ = ulid.New(ulid.Now(), rand.Reader)
	}
	return id.String()
}

// ValidID reports whether s is a ULID in its canonical (upper-case) form.
func ValidID(s string) bool {
	if len(s) != ulid.EncodedSize {
		return false
	}
	id, err := ulid.ParseStrict(s)
	return err == nil && id.String() == s
}

// maxQuotedID bounds the bytes of an id a client sent that an error quotes: an id is 26
// characters, and what is not one may be megabytes long (a path of 300,000 escapes).
const maxQuotedID = 80

// quoteID is s, an id or page token a client sent, quoted for an error message: its first
// maxQuotedID bytes, and "…" when there were more.
func quoteID(s string) string { return strconv.Quote(clip.Marked(s, maxQuotedID)) }

// ValidTenant reports whether s can name a tenant: 1 to 64 of [a-z0-9-].
func ValidTenant(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// IndexNamespace is the host-wide namespace of a tenant; it maps trace ids to sessions.
func IndexNamespace(tenant string) string { return "t/" + tenant + "/index" }

// SessionNamespace is the namespace of one session of a tenant.
func SessionNamespace(tenant, sessionID string) string {
	return "t/" + tenant + "/s/" + sessionID
}

// MergedNamespace is the shared namespace merged traces are copied into.
func MergedNamespace(tenant string) string { return "t/" + tenant + "/merged" }

// Storage keys inside the namespaces above.
func recordKey(traceID string) []byte { return []byte("trace/" + traceID) }
func entryPrefix(traceID string) []byte {
	return []byte("prov/" + traceID + "/")
}
func entryKey(traceID string, i int64) []byte {
	return append(entryPrefix(traceID), indexDigits(i)...)
}
func ckptPrefix(traceID string) []byte { return []byte("ckpt/" + traceID + "/") }
func ckptKey(traceID string, n int64) []byte {
	return append(ckptPrefix(traceID), indexDigits(n)...)
}

// recordPrefix is the prefix of record keys, which a listing scans.
var recordPrefix = []byte("trace/")

// indexDigits writes i as 20 decimal digits, so keys sort by number.
func indexDigits(i int64) string {
	const width = 20
	var b [width]byte
	for k := width - 1; k >= 0; k-- {
		b[k] = byte('0' + i%10)
		i /= 10
	}
	return string(b[:])
}
