// Package storage is the SDK for storage plugins: an ordered, transactional key-value store
// with namespaces. The host builds sessions, traces and provenance on it, so a backend that
// passes the conformance suite (sdk/sdktest) gets every feature of the host.
//
// A plugin implements Storage and calls Serve from main. The SDK's server checks every
// request against the protocol's limits before the backend sees it, but code that calls a
// backend directly (sdktest.RunStorage in-process, for one) does not, so backends check
// too, with ValidateNamespace, ValidateKey, ValidateValue, ValidateBatch, ValidateCAS and
// NormalizeScan. See examples/storage-plugin for a complete, durable backend with its tests.
package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/limitgraph/limit/sdk/base"
)

// Limits every backend accepts and the protocol enforces on both sides.
const (
	// MaxNamespaceSize is the longest namespace, in bytes.
	MaxNamespaceSize = 128
	// MaxKeySize is the longest key, in bytes.
	MaxKeySize = 1024
	// MaxValueSize is the largest value, in bytes (16 MiB).
	MaxValueSize = 16 << 20
	// MaxBatchOps is the most operations in one batch.
	MaxBatchOps = 10000
	// MaxBatchBytes bounds the keys and values of one batch together (48 MiB).
	MaxBatchBytes = 48 << 20
	// DefaultScanLimit is the page size of a scan that names none.
	DefaultScanLimit = 100
	// MaxScanLimit is the largest page a scan returns.
	MaxScanLimit = 1000
	// MaxScanBytes bounds the keys and values of one scan page; a page that would exceed
	// it is cut short and reports More.
	MaxScanBytes = 32 << 20
)

// ErrInvalid marks a request that breaks the protocol's rules (empty key, too large, ...).
var ErrInvalid = errors.New("invalid storage request")

// ErrNoSpace marks a write refused because the backend's disk is full.
var ErrNoSpace = errors.New("storage is out of space")

// ErrUnavailable marks a failure to reach the backend (a crashed plugin, a lost database).
var ErrUnavailable = errors.New("storage unavailable")

// ErrNotSent marks an ErrUnavailable failure of a call whose request never reached the
// plugin (its connection was already broken, or broke while the request was written):
// nothing of it was applied, so any call, even a compare-and-swap, may be made again.
var ErrNotSent = errors.New("request not sent")

// ErrConditionFailed marks a conditional batch whose assertion did not hold; nothing of the
// batch was applied. Errors that wrap it are *ConditionError when they come from Batch.
var ErrConditionFailed = errors.New("batch condition failed")

// ConditionError names the assertion of a batch that did not hold.
type ConditionError struct {
	// Op is the index of the assertion in the batch.
	Op int
	// Key is its key.
	Key []byte
}

func (e *ConditionError) Error() string {
	return fmt.Sprintf("%v: operation %d on key %q", ErrConditionFailed, e.Op, e.Key)
}

// Unwrap returns ErrConditionFailed.
func (e *ConditionError) Unwrap() error { return ErrConditionFailed }

// IsAssertion reports whether op is an assertion rather than a write.
func (op Op) IsAssertion() bool { return op.Kind == OpAssertAbsent || op.Kind == OpAssertValue }

// CheckAssertions checks the assertions among ops with get, which reads the state before
// the batch; backends call it inside the transaction that then applies the writes. It
// returns the first *ConditionError, or get's error.
//
// In a batch with ops in several namespaces, use CheckAssertionsIn.
func CheckAssertions(ops []Op, get func(key []byte) (value []byte, found bool, err error)) error {
	return CheckAssertionsIn("", ops, func(_ string, key []byte) ([]byte, bool, error) { return get(key) })
}

// CheckAssertionsIn is CheckAssertions for a batch to namespace ns whose ops may name other
// namespaces (Op.Namespace): get reads key in namespace.
func CheckAssertionsIn(ns string, ops []Op, get func(namespace string, key []byte) (value []byte, found bool, err error)) error {
	for i, op := range ops {
		if !op.IsAssertion() {
			continue
		}
		v, ok, err := get(op.In(ns), op.Key)
		if err != nil {
			return err
		}
		if (op.Kind == OpAssertAbsent && ok) || (op.Kind == OpAssertValue && (!ok || !bytes.Equal(v, op.Value))) {
			return &ConditionError{Op: i, Key: bytes.Clone(op.Key)}
		}
	}
	return nil
}

// KeyValue is one item of a scan.
type KeyValue struct {
	Key   []byte
	Value []byte
}

// ScanRequest asks for keys with Prefix, in ascending byte order, strictly after
// StartAfter, at most Limit of them (0 means DefaultScanLimit).
type ScanRequest struct {
	Namespace  string
	Prefix     []byte
	StartAfter []byte
	Limit      int
	KeysOnly   bool
}

// ScanResult is one page of a scan. More tells that keys with the prefix follow the last
// item; pass its key as the next StartAfter.
type ScanResult struct {
	Items []KeyValue
	More  bool
}

// OpKind is the kind of a batch operation.
type OpKind int

// Batch operation kinds. The assertions make a batch conditional: each is checked against
// the state before the batch, and when one does not hold nothing is applied and Batch
// returns a *ConditionError.
const (
	OpPut OpKind = iota + 1
	OpDelete
	// OpAssertAbsent: the key must not exist.
	OpAssertAbsent
	// OpAssertValue: the key must exist and hold Value.
	OpAssertValue
)

// Op is one operation of a batch.
type Op struct {
	Kind  OpKind
	Key   []byte
	Value []byte
	// Namespace is the op's namespace when it is not the batch's; empty means the batch's.
	// Only backends that declare CapBatchNamespaces take such ops (the Client refuses to
	// send them to others); the batch stays atomic across its namespaces.
	Namespace string
}

// CapBatchNamespaces is the capability (base.Info.Capabilities) of a backend whose Batch
// applies ops in other namespaces than the batch's (Op.Namespace), atomically with the rest.
const CapBatchNamespaces = "batch:namespaces"

// TakesBatchNamespaces tells whether st applies batch ops in other namespaces
// (CapBatchNamespaces): a plugin client asks its plugin (once), other implementations
// answer by their PluginInfo.
func TakesBatchNamespaces(ctx context.Context, st Storage) (bool, error) {
	if c, ok := st.(interface {
		BatchNamespaces(context.Context) (bool, error)
	}); ok {
		return c.BatchNamespaces(ctx)
	}
	return slices.Contains(st.PluginInfo().Capabilities, CapBatchNamespaces), nil
}

// In returns the op's namespace in a batch to namespace ns.
func (op Op) In(ns string) string {
	if op.Namespace != "" {
		return op.Namespace
	}
	return ns
}

// Namespaces tells whether a batch to ns has ops in other namespaces.
func Namespaces(ns string, ops []Op) bool {
	for _, op := range ops {
		if op.Namespace != "" && op.Namespace != ns {
			return true
		}
	}
	return false
}

// CASRequest replaces the value at Key only if the current state is as expected: absent when
// ExpectPresent is false, equal to Expected otherwise. Delete removes the key instead of
// writing Value.
type CASRequest struct {
	// Namespace and Key name the key, under the same rules as Put's.
	Namespace string
	Key       []byte
	// ExpectPresent false expects the key to be absent (create-if-absent); true expects
	// it to hold exactly Expected. A key holding an empty value is present.
	ExpectPresent bool
	// Expected is the value the key must hold, compared byte for byte (nil and empty are
	// the same, the empty value); ignored when ExpectPresent is false.
	Expected []byte
	// Delete removes the key when the expectation holds; Value is then ignored.
	Delete bool
	// Value is written at Key when the expectation holds and Delete is false; nil writes
	// the empty value.
	Value []byte
}

// CASResult tells whether the swap happened and what the key holds after the call.
type CASResult struct {
	// Swapped is true when the expectation held and the write or delete was applied.
	Swapped bool
	// Present says whether the key exists after the call: when the swap failed, it is
	// the state that did not match; when it succeeded, false after a delete, else true.
	Present bool
	// Current is the key's value after the call when Present (the value that did not
	// match, or the one just written), and empty otherwise; a client retrying a
	// read-modify-write uses it as its next Expected without another Get.
	Current []byte
}

// Storage is the interface a storage backend implements. All methods are safe for
// concurrent use. A write returns only once it is durable: after a crash, every write that
// returned without error is there, intact. Returned slices belong to the caller.
type Storage interface {
	base.Plugin
	// Get returns the value at key and whether it exists.
	Get(ctx context.Context, namespace string, key []byte) ([]byte, bool, error)
	// Put writes value at key.
	Put(ctx context.Context, namespace string, key, value []byte) error
	// Delete removes key and tells whether it existed.
	Delete(ctx context.Context, namespace string, key []byte) (bool, error)
	// Scan lists keys in order; see ScanRequest.
	Scan(ctx context.Context, req ScanRequest) (ScanResult, error)
	// Batch applies all ops, in order, atomically: a reader sees all of them or none.
	// Assertions (OpAssertAbsent, OpAssertValue) are checked first, against the state
	// before the batch; if one fails nothing is applied and a *ConditionError is returned.
	// The host's Client sends concurrent Puts to one namespace as one Batch, so a Batch
	// should cost about one durable write, not one per op. Behind the plugin boundary,
	// the ops' keys and values are slices of the one buffer the request arrived in: a
	// backend that keeps one after Batch returns keeps that whole buffer alive with it
	// (copy what you keep).
	Batch(ctx context.Context, namespace string, ops []Op) error
	// CompareAndSwap is an atomic conditional write; see CASRequest.
	CompareAndSwap(ctx context.Context, req CASRequest) (CASResult, error)
	// Close releases the backend's resources.
	Close() error
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// ValidateNamespace checks a namespace against the protocol's rules.
func ValidateNamespace(ns string) error {
	if ns == "" {
		return invalidf("namespace is empty")
	}
	if len(ns) > MaxNamespaceSize {
		return invalidf("namespace is %d bytes, the limit is %d", len(ns), MaxNamespaceSize)
	}
	if !utf8.ValidString(ns) {
		return invalidf("namespace %q is not valid UTF-8", ns)
	}
	return nil
}

// ValidateKey checks a key against the protocol's rules.
func ValidateKey(key []byte) error {
	if len(key) == 0 {
		return invalidf("key is empty")
	}
	if len(key) > MaxKeySize {
		return invalidf("key is %d bytes, the limit is %d", len(key), MaxKeySize)
	}
	return nil
}

// ValidateValue checks a value against the protocol's rules.
func ValidateValue(v []byte) error {
	if len(v) > MaxValueSize {
		return invalidf("value is %d bytes, the limit is %d", len(v), MaxValueSize)
	}
	return nil
}

// ValidateBatch checks a batch against the protocol's rules.
func ValidateBatch(namespace string, ops []Op) error {
	if err := ValidateNamespace(namespace); err != nil {
		return err
	}
	if len(ops) > MaxBatchOps {
		return invalidf("batch has %d operations, the limit is %d", len(ops), MaxBatchOps)
	}
	total := 0
	for i, op := range ops {
		if op.Kind < OpPut || op.Kind > OpAssertValue {
			return invalidf("batch operation %d has unknown kind %d", i, op.Kind)
		}
		if err := ValidateKey(op.Key); err != nil {
			return fmt.Errorf("batch operation %d: %w", i, err)
		}
		if op.Namespace != "" {
			if err := ValidateNamespace(op.Namespace); err != nil {
				return fmt.Errorf("batch operation %d: %w", i, err)
			}
		}
		if err := ValidateValue(op.Value); err != nil {
			return fmt.Errorf("batch operation %d: %w", i, err)
		}
		total += len(op.Key) + len(op.Value)
	}
	if total > MaxBatchBytes {
		return invalidf("batch holds %d bytes, the limit is %d", total, MaxBatchBytes)
	}
	return nil
}

// ValidateCAS checks a compare-and-swap request against the protocol's rules.
func ValidateCAS(req CASRequest) error {
	if err := ValidateNamespace(req.Namespace); err != nil {
		return err
	}
	if err := ValidateKey(req.Key); err != nil {
		return err
	}
	if err := ValidateValue(req.Value); err != nil {
		return err
	}
	if err := ValidateValue(req.Expected); err != nil {
		return fmt.Errorf("expected: %w", err)
	}
	return nil
}

// ScanBounds turns a scan request into a key range, for backends that scan by range:
// lower is the larger of the prefix and the least key after StartAfter (StartAfter
// followed by a zero byte); upper is PrefixEnd(Prefix).
func ScanBounds(req ScanRequest) (lower, upper []byte) {
	lower = req.Prefix
	if len(req.StartAfter) > 0 {
		succ := append(bytes.Clone(req.StartAfter), 0)
		if bytes.Compare(succ, lower) > 0 {
			lower = succ
		}
	}
	return lower, PrefixEnd(req.Prefix)
}

// PrefixEnd returns the least key greater than every key starting with prefix: prefix
// with trailing 0xff bytes dropped and its last byte incremented. It is nil when the
// prefix is empty or all 0xff, where no such key exists.
func PrefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// NormalizeScan validates a scan request and clamps its limit.
func NormalizeScan(req *ScanRequest) error {
	if err := ValidateNamespace(req.Namespace); err != nil {
		return err
	}
	if len(req.Prefix) > MaxKeySize || len(req.StartAfter) > MaxKeySize {
		return invalidf("prefix or start_after longer than %d bytes", MaxKeySize)
	}
	switch {
	case req.Limit < 0:
		return invalidf("limit is negative")
	case req.Limit == 0:
		req.Limit = DefaultScanLimit
	case req.Limit > MaxScanLimit:
		req.Limit = MaxScanLimit
	}
	return nil
}

// Health is a backend's account of its own state, beyond its process being up.
type Health struct {
	// OK is false while the backend cannot make writes durable (its disk is full, say);
	// the host then reports itself degraded.
	OK bool `json:"ok"`
	// Detail says why not OK, or notes something while OK; empty when there is nothing
	// to say.
	Detail string `json:"detail,omitempty"`
	// Metrics are figures the backend reports about itself, by name, in base units named
	// by the name's last word (log_pending_bytes, last_checkpoint_seconds). A figure that
	// only grows while the process runs (a count of events, a sum of their durations) is
	// named NAME_total: the host exposes it as a Prometheus counter, the others as gauges.
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// HealthReporter is implemented by backends that can tell more than that their process
// is up; the SDK's server answers the Health call with it, and with OK for backends that
// do not implement it.
type HealthReporter interface {
	Health(ctx context.Context) Health
}

// Snapshotter is implemented by backends that can read every key of every namespace as of
// one point in time: writes that completed before Snapshot was called are in what it
// yields, writes made while it runs are not. The SDK's server streams it as the Snapshot
// call, which the host uses for online backups; a backend without it answers
// UNIMPLEMENTED, and the host then refuses online backups (the operator backs up with
// limitd stopped).
//
// Snapshot calls fn once per key, ordered by namespace and then key (bytewise), and stops
// at fn's first error, which it returns. fn must not keep key or value after it returns.
// Backends should hold their point-in-time view no longer than the walk: the host copies
// it to a local file as fast as it comes.
type Snapshotter interface {
	Snapshot(ctx context.Context, fn func(namespace string, key, value []byte) error) error
}

// ErrNoSnapshot marks a backend that offers no point-in-time snapshot (Snapshotter).
var ErrNoSnapshot = errors.New("the storage backend offers no point-in-time snapshot")
