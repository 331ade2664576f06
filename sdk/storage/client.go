package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/internal/fastpath"
)

// Client is the host's side of a storage plugin. It implements Storage, so the host and
// the conformance suite drive a plugin binary and an in-process backend the same way.
// Storage calls go over the plugin's fast path when it offers one (a Unix socket the plugin
// opens beside the gRPC connection, cheaper per call), over gRPC otherwise; errors are the
// same either way. Puts and unconditional Batches to one namespace that callers make at the
// same moment cross the boundary as one Batch, applied as if one after the other; a
// merged Batch that fails for what may be one call's fault is retried call by call, so
// only that call fails.
type Client struct {
	base.PluginClient
	rpc     limitv1.StorageClient // the fast path's client, or the gRPC client
	fast    *fastClient
	fastErr error

	// caps is whether the plugin declared CapBatchNamespaces, once asked (capsKnown).
	capsMu    sync.Mutex
	capsKnown bool
	caps      bool

	merge merger // concurrent writes, merged (merge.go)
}

// BatchNamespaces tells whether the plugin applies batch ops in other namespaces than the
// batch's (it declares CapBatchNamespaces). The plugin is asked once.
func (c *Client) BatchNamespaces(ctx context.Context) (bool, error) {
	c.capsMu.Lock()
	defer c.capsMu.Unlock()
	if !c.capsKnown {
		info, err := c.Client.Info(ctx)
		if err != nil {
			return false, fromStatus("info", err)
		}
		c.capsKnown, c.caps = true, slices.Contains(info.Capabilities, CapBatchNamespaces)
	}
	return c.caps, nil
}

// NewClient returns a client over an established plugin connection that makes every call
// over gRPC.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{
		PluginClient: base.NewPluginClient(limitv1.NewPluginClient(conn)), rpc: limitv1.NewStorageClient(conn),
		fastErr: errors.New("gRPC only"),
	}
}

// fastSetupTimeout bounds asking for and connecting to a plugin's fast path.
const fastSetupTimeout = 10 * time.Second

// NewFastClient returns a client over an established plugin connection that asks the
// plugin for its fast path and makes the storage calls over it; when the plugin offers
// none, or it cannot be set up, the client uses gRPC (FastPathError tells why).
func NewFastClient(ctx context.Context, conn *grpc.ClientConn) *Client {
	c := NewClient(conn)
	ctx, cancel := context.WithTimeout(ctx, fastSetupTimeout)
	defer cancel()
	fc, err := dialFast(ctx, c.rpc)
	if err != nil {
		c.fastErr = fmt.Errorf("storage fast path not used: %w", err)
		return c
	}
	c.rpc, c.fast, c.fastErr = fc, fc, nil
	return c
}

// Transport names what carries the storage calls: "unix" (the fast path) or "grpc". Once
// every fast-path connection has broken, it is "grpc" again.
func (c *Client) Transport() string {
	if c.fast != nil && c.fast.alive() {
		return "unix"
	}
	return "grpc"
}

// FastPathError tells why the client does not use a fast path (nil when it does).
func (c *Client) FastPathError() error { return c.fastErr }

// Ping makes one empty call over the transport of the storage calls: the bare cost of a
// call across the plugin boundary.
func (c *Client) Ping(ctx context.Context) error {
	var err error
	if c.fast != nil && c.fast.alive() {
		err = c.fast.ping(ctx)
	} else {
		_, err = c.Client.Info(ctx)
	}
	return fromStatus("ping", err)
}

// Health asks the backend for its state (HealthReporter). A plugin too old to answer is
// taken as healthy.
func (c *Client) Health(ctx context.Context) (Health, error) {
	resp, err := c.rpc.Health(ctx, &limitv1.StorageHealthRequest{})
	if status.Code(err) == codes.Unimplemented {
		return Health{OK: true}, nil
	}
	if err != nil {
		return Health{}, fromStatus("health", err)
	}
	return Health{OK: resp.GetOk(), Detail: resp.GetDetail(), Metrics: resp.GetMetrics()}, nil
}

// grpcDialFailed and grpcHandshakeFailed are in the message of a gRPC call that failed
// because no connection to the plugin could be made (it died): the dial failed, or the
// socket was reset during the connection's TLS handshake, before any call was written on
// it. Either way the call was never sent.
const (
	grpcDialFailed      = "transport: error while dialing"
	grpcHandshakeFailed = "transport: authentication handshake failed"
)

// fromStatus maps a gRPC error back to the package's sentinel errors.
func fromStatus(op string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("storage %s: %w", op, err)
	}
	var sentinel error
	switch st.Code() {
	case codes.InvalidArgument:
		sentinel = ErrInvalid
	case codes.ResourceExhausted:
		sentinel = ErrNoSpace
	case codes.FailedPrecondition:
		var n int
		var key []byte
		if _, err := fmt.Sscanf(st.Message(), "condition %d failed: %x", &n, &key); err == nil {
			return fmt.Errorf("storage %s: %w", op, &ConditionError{Op: n, Key: key})
		}
		sentinel = ErrConditionFailed
	case codes.Unavailable:
		sentinel = ErrUnavailable
		if errors.Is(err, fastpath.ErrNotSent) || strings.Contains(st.Message(), grpcDialFailed) || strings.Contains(st.Message(), grpcHandshakeFailed) {
			return fmt.Errorf("storage %s: %w (%w): %s", op, ErrUnavailable, ErrNotSent, st.Message())
		}
	case codes.Canceled:
		sentinel = context.Canceled
	case codes.DeadlineExceeded:
		sentinel = context.DeadlineExceeded
	default:
		return fmt.Errorf("storage %s: %s", op, st.Message())
	}
	// The plugin's message often begins with the sentinel's own words (it wrapped it), or
	// is only those (a deadline: "context deadline exceeded"): say them once.
	msg := strings.TrimPrefix(st.Message(), sentinel.Error()+": ")
	if msg == sentinel.Error() || msg == "" {
		return fmt.Errorf("storage %s: %w", op, sentinel)
	}
	return fmt.Errorf("storage %s: %w: %s", op, sentinel, msg)
}

// Get implements Storage.
func (c *Client) Get(ctx context.Context, ns string, key []byte) ([]byte, bool, error) {
	if err := validateKeyIn(ns, key); err != nil {
		return nil, false, err
	}
	r, err := c.rpc.Get(ctx, &limitv1.GetRequest{Namespace: ns, Key: key})
	if err != nil {
		return nil, false, fromStatus("get", err)
	}
	if !r.GetFound() {
		return nil, false, nil
	}
	return nonNil(r.GetValue()), true, nil
}

// Put implements Storage.
func (c *Client) Put(ctx context.Context, ns string, key, value []byte) error {
	if err := validatePut(ns, key, value); err != nil {
		return err
	}
	return c.write(ctx, ns, true, []Op{{Kind: OpPut, Key: key, Value: value}})
}

// Delete implements Storage.
func (c *Client) Delete(ctx context.Context, ns string, key []byte) (bool, error) {
	if err := validateKeyIn(ns, key); err != nil {
		return false, err
	}
	r, err := c.rpc.Delete(ctx, &limitv1.DeleteRequest{Namespace: ns, Key: key})
	if err != nil {
		return false, fromStatus("delete", err)
	}
	return r.GetExisted(), nil
}

// Scan implements Storage.
func (c *Client) Scan(ctx context.Context, req ScanRequest) (ScanResult, error) {
	check := req
	if err := NormalizeScan(&check); err != nil {
		return ScanResult{}, err
	}
	r, err := c.rpc.Scan(ctx, &limitv1.ScanRequest{
		Namespace: req.Namespace, Prefix: req.Prefix, StartAfter: req.StartAfter,
		Limit: uint32(min(req.Limit, MaxScanLimit)), KeysOnly: req.KeysOnly,
	})
	if err != nil {
		return ScanResult{}, fromStatus("scan", err)
	}
	res := ScanResult{More: r.GetMore(), Items: make([]KeyValue, len(r.GetItems()))}
	for i, it := range r.GetItems() {
		res.Items[i] = KeyValue{Key: it.GetKey(), Value: nonNil(it.GetValue())}
		if req.KeysOnly {
			res.Items[i].Value = nil
		}
	}
	return res, nil
}

// Batch implements Storage.
func (c *Client) Batch(ctx context.Context, ns string, ops []Op) error {
	if err := ValidateBatch(ns, ops); err != nil {
		return err
	}
	multi := Namespaces(ns, ops)
	if multi {
		// A plugin that does not know Op.Namespace would apply the op in ns.
		ok, err := c.BatchNamespaces(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return invalidf("the plugin does not take batch operations in other namespaces (capability %s)", CapBatchNamespaces)
		}
	}
	if multi || slices.ContainsFunc(ops, Op.IsAssertion) {
		// Never merged: see merge.go.
		return fromStatus("batch", c.send(ctx, ns, false, ops))
	}
	return c.write(ctx, ns, false, ops)
}

// CompareAndSwap implements Storage.
func (c *Client) CompareAndSwap(ctx context.Context, req CASRequest) (CASResult, error) {
	if err := ValidateCAS(req); err != nil {
		return CASResult{}, err
	}
	r, err := c.rpc.CompareAndSwap(ctx, &limitv1.CompareAndSwapRequest{
		Namespace: req.Namespace, Key: req.Key, ExpectPresent: req.ExpectPresent,
		Expected: req.Expected, Delete: req.Delete, Value: req.Value,
	})
	if err != nil {
		return CASResult{}, fromStatus("compare-and-swap", err)
	}
	res := CASResult{Swapped: r.GetSwapped(), Present: r.GetPresent()}
	if res.Present {
		res.Current = nonNil(r.GetCurrent())
	}
	return res, nil
}

// Close closes the fast path's connections; the plugin process is stopped by whoever
// started it. Calls after Close go over gRPC.
func (c *Client) Close() error {
	if c.fast != nil {
		c.fast.close()
	}
	return nil
}

func validateKeyIn(ns string, key []byte) error {
	if err := ValidateNamespace(ns); err != nil {
		return err
	}
	return ValidateKey(key)
}

// IsUnavailable reports whether err means the backend could not be reached, so the call
// may be retried once the plugin is back.
func IsUnavailable(err error) bool {
	return errors.Is(err, ErrUnavailable)
}

var _ Storage = (*Client)(nil)

// Snapshot streams the plugin's point-in-time snapshot (Snapshotter) to fn, ordered by
// namespace and then key, and stops at fn's first error, which it returns. A plugin that
// offers none: an error wrapping ErrNoSnapshot.
func (c *Client) Snapshot(ctx context.Context, fn func(namespace string, key, value []byte) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Snapshot(ctx, &limitv1.SnapshotRequest{})
	for err == nil {
		var chunk *limitv1.SnapshotChunk
		if chunk, err = stream.Recv(); err != nil {
			break
		}
		for _, it := range chunk.GetItems() {
			if err := fn(it.GetNamespace(), it.GetKey(), nonNil(it.GetValue())); err != nil {
				return err
			}
		}
	}
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case status.Code(err) == codes.Unimplemented:
		return fmt.Errorf("storage snapshot: %w", ErrNoSnapshot)
	}
	return fromStatus("snapshot", err)
}
