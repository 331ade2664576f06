package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/base"
)

// server adapts a Storage to the gRPC service. It validates every request before the
// implementation sees it, so every backend enforces the same limits.
type server struct {
	limitv1.UnimplementedStorageServer
	impl Storage
	fast *fastServer // nil: no fast path offered
	// batchNamespaces tells whether impl declares CapBatchNamespaces (asked once).
	batchNamespaces func() bool
}

func newServer(impl Storage) *server {
	return &server{impl: impl, batchNamespaces: sync.OnceValue(func() bool {
		return slices.Contains(impl.PluginInfo().Capabilities, CapBatchNamespaces)
	})}
}

// OpenFastPath offers the fast path; see fastpath.go.
func (s *server) OpenFastPath(_ context.Context, req *limitv1.OpenFastPathRequest) (resp *limitv1.OpenFastPathResponse, err error) {
	defer base.Recover(&err)
	if s.fast == nil {
		return nil, status.Error(codes.FailedPrecondition, "this plugin offers no fast path")
	}
	return s.fast.open(req)
}

// toStatus maps an implementation error to a gRPC status.
func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrConditionFailed):
		var ce *ConditionError
		if errors.As(err, &ce) {
			return status.Errorf(codes.FailedPrecondition, "condition %d failed: %x", ce.Op, ce.Key)
		}
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrNoSpace):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}

// Health answers with the backend's HealthReporter, or OK when it has none.
func (s *server) Health(ctx context.Context, _ *limitv1.StorageHealthRequest) (resp *limitv1.StorageHealthResponse, err error) {
	defer base.Recover(&err)
	h := Health{OK: true}
	if r, ok := s.impl.(HealthReporter); ok {
		h = r.Health(ctx)
	}
	return &limitv1.StorageHealthResponse{Ok: h.OK, Detail: h.Detail, Metrics: h.Metrics}, nil
}

func (s *server) Get(ctx context.Context, req *limitv1.GetRequest) (resp *limitv1.GetResponse, err error) {
	defer base.Recover(&err)
	if err := ValidateNamespace(req.GetNamespace()); err != nil {
		return nil, toStatus(err)
	}
	if err := ValidateKey(req.GetKey()); err != nil {
		return nil, toStatus(err)
	}
	v, ok, err := s.impl.Get(ctx, req.GetNamespace(), req.GetKey())
	if err != nil {
		return nil, toStatus(err)
	}
	return &limitv1.GetResponse{Found: ok, Value: v}, nil
}

func (s *server) Put(ctx context.Context, req *limitv1.PutRequest) (resp *limitv1.PutResponse, err error) {
	defer base.Recover(&err)
	if err := validatePut(req.GetNamespace(), req.GetKey(), req.GetValue()); err != nil {
		return nil, toStatus(err)
	}
	if err := s.impl.Put(ctx, req.GetNamespace(), req.GetKey(), nonNil(req.GetValue())); err != nil {
		return nil, toStatus(err)
	}
	return &limitv1.PutResponse{}, nil
}

func (s *server) Delete(ctx context.Context, req *limitv1.DeleteRequest) (resp *limitv1.DeleteResponse, err error) {
	defer base.Recover(&err)
	if err := ValidateNamespace(req.GetNamespace()); err != nil {
		return nil, toStatus(err)
	}
	if err := ValidateKey(req.GetKey()); err != nil {
		return nil, toStatus(err)
	}
	existed, err := s.impl.Delete(ctx, req.GetNamespace(), req.GetKey())
	if err != nil {
		return nil, toStatus(err)
	}
	return &limitv1.DeleteResponse{Existed: existed}, nil
}

func (s *server) Scan(ctx context.Context, req *limitv1.ScanRequest) (resp *limitv1.ScanResponse, err error) {
	defer base.Recover(&err)
	sr := ScanRequest{
		Namespace: req.GetNamespace(), Prefix: req.GetPrefix(), StartAfter: req.GetStartAfter(),
		Limit: int(req.GetLimit()), KeysOnly: req.GetKeysOnly(),
	}
	if err := NormalizeScan(&sr); err != nil {
		return nil, toStatus(err)
	}
	res, err := s.impl.Scan(ctx, sr)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &limitv1.ScanResponse{More: res.More}
	size := 0
	for i, kv := range res.Items {
		size += len(kv.Key) + len(kv.Value)
		if i > 0 && size > MaxScanBytes {
			out.More = true
			break
		}
		item := &limitv1.KeyValue{Key: kv.Key}
		if !sr.KeysOnly {
			item.Value = kv.Value
		}
		out.Items = append(out.Items, item)
	}
	return out, nil
}

func (s *server) Batch(ctx context.Context, req *limitv1.BatchRequest) (*limitv1.BatchResponse, error) {
	ops := make([]Op, len(req.GetOps()))
	for i, o := range req.GetOps() {
		ops[i] = Op{Kind: OpKind(o.GetKind()), Key: o.GetKey(), Value: nonNil(o.GetValue()), Namespace: o.GetNamespace()}
	}
	return s.batch(ctx, req.GetNamespace(), ops)
}

// batch serves a Batch of ops in ns, decoded from gRPC's message or from a fast path frame
// (decodeBatch).
func (s *server) batch(ctx context.Context, ns string, ops []Op) (resp *limitv1.BatchResponse, err error) {
	defer base.Recover(&err)
	if err := ValidateBatch(ns, ops); err != nil {
		return nil, toStatus(err)
	}
	if Namespaces(ns, ops) && !s.batchNamespaces() {
		return nil, toStatus(invalidf("this backend does not take batch operations in other namespaces (capability %s)", CapBatchNamespaces))
	}
	if err := s.impl.Batch(ctx, ns, ops); err != nil {
		return nil, toStatus(err)
	}
	return &limitv1.BatchResponse{}, nil
}

func (s *server) CompareAndSwap(ctx context.Context, req *limitv1.CompareAndSwapRequest) (resp *limitv1.CompareAndSwapResponse, err error) {
	defer base.Recover(&err)
	cr := CASRequest{
		Namespace: req.GetNamespace(), Key: req.GetKey(), ExpectPresent: req.GetExpectPresent(),
		Expected: nonNil(req.GetExpected()), Delete: req.GetDelete(), Value: nonNil(req.GetValue()),
	}
	if err := validatePut(cr.Namespace, cr.Key, cr.Value); err != nil {
		return nil, toStatus(err)
	}
	if err := ValidateValue(cr.Expected); err != nil {
		return nil, toStatus(fmt.Errorf("expected: %w", err))
	}
	res, err := s.impl.CompareAndSwap(ctx, cr)
	if err != nil {
		return nil, toStatus(err)
	}
	return &limitv1.CompareAndSwapResponse{Swapped: res.Swapped, Present: res.Present, Current: res.Current}, nil
}

func validatePut(ns string, key, value []byte) error {
	if err := ValidateNamespace(ns); err != nil {
		return err
	}
	if err := ValidateKey(key); err != nil {
		return err
	}
	return ValidateValue(value)
}

// nonNil turns a nil slice (proto's empty bytes) into an empty one, so "empty value" and
// "no value" are the same thing for implementations.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// snapshotChunkBytes is the size the server fills a Snapshot chunk to; an item larger than
// that travels alone (a value is at most MaxValueSize, well under base.MaxMessageSize).
const snapshotChunkBytes = 1 << 20

// Snapshot streams the backend's Snapshotter in chunks, or answers UNIMPLEMENTED. Every
// item is checked against the protocol's limits, and the order (namespace, then key) too:
// a backend that breaks them fails the call rather than hand the host a backup that does
// not restore.
func (s *server) Snapshot(_ *limitv1.SnapshotRequest, stream limitv1.Storage_SnapshotServer) (err error) {
	defer base.Recover(&err)
	sn, ok := s.impl.(Snapshotter)
	if !ok {
		return status.Error(codes.Unimplemented, ErrNoSnapshot.Error())
	}
	var (
		chunk   limitv1.SnapshotChunk
		size    int
		lastNS  string
		lastKey []byte
		first   = true
	)
	flush := func() error {
		if len(chunk.Items) == 0 {
			return nil
		}
		if err := stream.Send(&chunk); err != nil {
			return err
		}
		chunk.Items, size = nil, 0
		return nil
	}
	err = sn.Snapshot(stream.Context(), func(ns string, key, value []byte) error {
		if err := ValidateNamespace(ns); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		if err := ValidateKey(key); err != nil {
			return fmt.Errorf("snapshot of namespace %q: %w", ns, err)
		}
		if err := ValidateValue(value); err != nil {
			return fmt.Errorf("snapshot of namespace %q: %w", ns, err)
		}
		if !first && (ns < lastNS || (ns == lastNS && bytes.Compare(key, lastKey) <= 0)) {
			return status.Errorf(codes.Internal, "snapshot out of order: %q/%x after %q/%x", ns, key, lastNS, lastKey)
		}
		first, lastNS, lastKey = false, ns, append(lastKey[:0], key...)
		if size > 0 && size+len(ns)+len(key)+len(value) > snapshotChunkBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		chunk.Items = append(chunk.Items, &limitv1.SnapshotItem{Namespace: ns, Key: bytes.Clone(key), Value: nonNil(bytes.Clone(value))})
		size += len(ns) + len(key) + len(value) + 16
		return nil
	})
	if err == nil {
		err = flush()
	}
	return toStatus(err)
}
