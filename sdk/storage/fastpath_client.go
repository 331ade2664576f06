package storage

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/internal/fastpath"
)

// fastClient is the host's side of the fast path. It implements the gRPC client
// interface, so the Client's methods do not care which transport carries a call; once
// every connection is broken, calls go to the gRPC client again (a plugin that died
// answers those with UNAVAILABLE too, and the supervisor replaces the whole Client).
type fastClient struct {
	limitv1.StorageClient // the gRPC client: fallback, and OpenFastPath
	u                     *fastpath.UnaryClient
}

// dialFast asks the plugin for a fast path and connects to it. An error means the plugin
// offers none (an older plugin answers UNIMPLEMENTED) or it could not be set up; the
// caller then keeps using rpc alone.
func dialFast(ctx context.Context, rpc limitv1.StorageClient) (*fastClient, error) {
	r, err := rpc.OpenFastPath(ctx, &limitv1.OpenFastPathRequest{Version: fastVersion, Connections: fastpath.Requested(fastConnections)})
	if err != nil {
		return nil, err
	}
	u, err := fastpath.DialUnary(ctx, r, fastpath.UnaryOptions{
		Version: fastVersion, Connections: fastConnections, CancelOp: fastCancel, What: "storage plugin",
	})
	if err != nil {
		return nil, err
	}
	return &fastClient{StorageClient: rpc, u: u}, nil
}

// alive tells whether a connection still works.
func (f *fastClient) alive() bool { return f.u.Alive() }

// close closes every connection.
func (f *fastClient) close() { f.u.Close() }

// unary makes a call over the fast path, or over gRPC with grpcCall once every connection
// is broken. read tells a read from a write; the plugin may serve either inline
// (fastpath.Inline).
func unary[Out any, POut interface {
	*Out
	proto.Message
}](ctx context.Context, f *fastClient, op byte, read bool, in proto.Message, grpcCall func() (POut, error)) (POut, error) {
	out := POut(new(Out))
	call := f.u.CallLong
	if read {
		call = f.u.CallRead
	}
	err := call(ctx, op, in, out)
	if errors.Is(err, fastpath.ErrBroken) {
		return grpcCall()
	}
	return out, err
}

// Get implements limitv1.StorageClient.
func (f *fastClient) Get(ctx context.Context, in *limitv1.GetRequest, opts ...grpc.CallOption) (*limitv1.GetResponse, error) {
	return unary(ctx, f, fastGet, true, in, func() (*limitv1.GetResponse, error) { return f.StorageClient.Get(ctx, in, opts...) })
}

// Put implements limitv1.StorageClient.
func (f *fastClient) Put(ctx context.Context, in *limitv1.PutRequest, opts ...grpc.CallOption) (*limitv1.PutResponse, error) {
	return unary(ctx, f, fastPut, false, in, func() (*limitv1.PutResponse, error) { return f.StorageClient.Put(ctx, in, opts...) })
}

// Delete implements limitv1.StorageClient.
func (f *fastClient) Delete(ctx context.Context, in *limitv1.DeleteRequest, opts ...grpc.CallOption) (*limitv1.DeleteResponse, error) {
	return unary(ctx, f, fastDelete, false, in, func() (*limitv1.DeleteResponse, error) { return f.StorageClient.Delete(ctx, in, opts...) })
}

// Scan implements limitv1.StorageClient.
func (f *fastClient) Scan(ctx context.Context, in *limitv1.ScanRequest, opts ...grpc.CallOption) (*limitv1.ScanResponse, error) {
	return unary(ctx, f, fastScan, true, in, func() (*limitv1.ScanResponse, error) { return f.StorageClient.Scan(ctx, in, opts...) })
}

// Batch implements limitv1.StorageClient.
func (f *fastClient) Batch(ctx context.Context, in *limitv1.BatchRequest, opts ...grpc.CallOption) (*limitv1.BatchResponse, error) {
	return unary(ctx, f, fastBatch, false, in, func() (*limitv1.BatchResponse, error) { return f.StorageClient.Batch(ctx, in, opts...) })
}

// batchOps makes a Batch of ops in ns, encoded without building its message (see
// batchEncoding), over gRPC once every connection is broken.
func (f *fastClient) batchOps(ctx context.Context, ns string, ops []Op) error {
	err := f.u.CallLongEncoded(ctx, fastBatch, &batchEncoding{ns: ns, ops: ops}, new(limitv1.BatchResponse))
	if errors.Is(err, fastpath.ErrBroken) {
		_, err = f.StorageClient.Batch(ctx, batchRequest(ns, ops))
	}
	return err
}

// CompareAndSwap implements limitv1.StorageClient.
func (f *fastClient) CompareAndSwap(ctx context.Context, in *limitv1.CompareAndSwapRequest, opts ...grpc.CallOption) (*limitv1.CompareAndSwapResponse, error) {
	return unary(ctx, f, fastCompareAndSwap, false, in, func() (*limitv1.CompareAndSwapResponse, error) {
		return f.StorageClient.CompareAndSwap(ctx, in, opts...)
	})
}

// ping makes one empty call on the fast path.
func (f *fastClient) ping(ctx context.Context) error {
	err := f.u.CallRead(ctx, fastPing, &limitv1.PutRequest{}, new(limitv1.PutResponse))
	if errors.Is(err, fastpath.ErrBroken) {
		return status.Error(codes.Unavailable, "fast path: every connection is broken")
	}
	return err
}
