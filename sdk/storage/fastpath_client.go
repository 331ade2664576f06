package storage

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"

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
	conns                 []*fastConn
	next                  atomic.Uint32
	ids                   atomic.Uint32 // request ids, unique across the connections
}

// dialFast asks the plugin for a fast path and connects to it. An error means the plugin
// offers none (an older plugin answers UNIMPLEMENTED) or it could not be set up; the
// caller then keeps using rpc alone.
func dialFast(ctx context.Context, rpc limitv1.StorageClient) (*fastClient, error) {
	r, err := rpc.OpenFastPath(ctx, &limitv1.OpenFastPathRequest{Version: fastVersion, Connections: fastConnections})
	if err != nil {
		return nil, err
	}
	if err := fastpath.CheckOffer(r, fastVersion); err != nil {
		return nil, err
	}
	fc := &fastClient{StorageClient: rpc}
	for range fastConnections {
		c, err := connectFast(ctx, fc, r.GetAddress(), r.GetToken())
		if err != nil {
			fc.close()
			return nil, err
		}
		fc.conns = append(fc.conns, c)
	}
	return fc, nil
}

// connectFast opens and authenticates one connection.
func connectFast(ctx context.Context, fc *fastClient, addr string, token []byte) (*fastConn, error) {
	uc, err := fastpath.Dial(ctx, addr, token)
	if err != nil {
		return nil, err
	}
	c := &fastConn{client: fc, conn: uc, w: fastpath.NewFrameWriter(uc), pending: map[uint32]chan fastResult{}}
	go c.read()
	return c, nil
}

// pick returns a working connection, or nil when every one is broken. It prefers one that
// is not serving an inline read.
func (f *fastClient) pick() *fastConn {
	n := uint32(len(f.conns))
	start := f.next.Add(1)
	var fallback *fastConn
	for i := range n {
		c := f.conns[(start+i)%n]
		if !c.alive() {
			continue
		}
		if c.inline.Load() == 0 {
			return c
		}
		if fallback == nil {
			fallback = c
		}
	}
	return fallback
}

// pickRead returns a connection for a read and its op: an idle connection, claimed for an
// inline read, when there is one; else what pick returns.
func (f *fastClient) pickRead(op byte) (*fastConn, byte) {
	n := uint32(len(f.conns))
	start := f.next.Add(1)
	for i := range n {
		c := f.conns[(start+i)%n]
		if c.inflight.Load() == 0 && c.inline.CompareAndSwap(0, 1) {
			if c.inflight.Load() == 0 && c.alive() {
				return c, op | fastInline
			}
			c.inline.Store(0)
		}
	}
	return f.pick(), op
}

// close closes every connection.
func (f *fastClient) close() {
	for _, c := range f.conns {
		c.fail(errors.New("client closed"))
	}
}

// Get implements limitv1.StorageClient.
func (f *fastClient) Get(ctx context.Context, in *limitv1.GetRequest, opts ...grpc.CallOption) (*limitv1.GetResponse, error) {
	c, op := f.pickRead(fastGet)
	if c == nil {
		return f.StorageClient.Get(ctx, in, opts...)
	}
	out := new(limitv1.GetResponse)
	return out, c.call(ctx, op, in, out)
}

// Put implements limitv1.StorageClient.
func (f *fastClient) Put(ctx context.Context, in *limitv1.PutRequest, opts ...grpc.CallOption) (*limitv1.PutResponse, error) {
	c := f.pick()
	if c == nil {
		return f.StorageClient.Put(ctx, in, opts...)
	}
	out := new(limitv1.PutResponse)
	return out, c.call(ctx, fastPut, in, out)
}

// Delete implements limitv1.StorageClient.
func (f *fastClient) Delete(ctx context.Context, in *limitv1.DeleteRequest, opts ...grpc.CallOption) (*limitv1.DeleteResponse, error) {
	c := f.pick()
	if c == nil {
		return f.StorageClient.Delete(ctx, in, opts...)
	}
	out := new(limitv1.DeleteResponse)
	return out, c.call(ctx, fastDelete, in, out)
}

// Scan implements limitv1.StorageClient.
func (f *fastClient) Scan(ctx context.Context, in *limitv1.ScanRequest, opts ...grpc.CallOption) (*limitv1.ScanResponse, error) {
	c, op := f.pickRead(fastScan)
	if c == nil {
		return f.StorageClient.Scan(ctx, in, opts...)
	}
	out := new(limitv1.ScanResponse)
	return out, c.call(ctx, op, in, out)
}

// Batch implements limitv1.StorageClient.
func (f *fastClient) Batch(ctx context.Context, in *limitv1.BatchRequest, opts ...grpc.CallOption) (*limitv1.BatchResponse, error) {
	c := f.pick()
	if c == nil {
		return f.StorageClient.Batch(ctx, in, opts...)
	}
	out := new(limitv1.BatchResponse)
	return out, c.call(ctx, fastBatch, in, out)
}

// CompareAndSwap implements limitv1.StorageClient.
func (f *fastClient) CompareAndSwap(ctx context.Context, in *limitv1.CompareAndSwapRequest, opts ...grpc.CallOption) (*limitv1.CompareAndSwapResponse, error) {
	c := f.pick()
	if c == nil {
		return f.StorageClient.CompareAndSwap(ctx, in, opts...)
	}
	out := new(limitv1.CompareAndSwapResponse)
	return out, c.call(ctx, fastCompareAndSwap, in, out)
}

// ping makes one empty call on the fast path.
func (f *fastClient) ping(ctx context.Context) error {
	c, op := f.pickRead(fastPing)
	if c == nil {
		return status.Error(codes.Unavailable, "fast path: every connection is broken")
	}
	return c.call(ctx, op, &limitv1.PutRequest{}, new(limitv1.PutResponse))
}

// fastResult is a response frame: a gRPC code and the message or error text.
type fastResult struct {
	code codes.Code
	msg  []byte
}

// fastConn is one connection; calls from many goroutines share it, told apart by id.
type fastConn struct {
	client *fastClient
	conn   net.Conn
	w      *fastpath.FrameWriter

	inflight atomic.Int32 // calls sent and not yet answered
	inline   atomic.Int32 // 1 while an inline read is claimed or in flight

	mu      sync.Mutex
	pending map[uint32]chan fastResult
	err     error // set once the connection broke
}

// alive tells whether the connection still works.
func (c *fastConn) alive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil
}

// call sends in as op and decodes the answer into out. Its errors are gRPC statuses, as the
// gRPC client's: the call's code, UNAVAILABLE when the connection broke, CANCELED or
// DEADLINE_EXCEEDED when ctx ended first.
func (c *fastConn) call(ctx context.Context, op byte, in, out proto.Message) error {
	c.inflight.Add(1)
	defer func() {
		c.inflight.Add(-1)
		if op&fastInline != 0 {
			c.inline.Store(0)
		}
	}()
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	ch := make(chan fastResult, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return lostStatus(err)
	}
	id := c.client.ids.Add(1)
	c.pending[id] = ch
	c.mu.Unlock()
	var deadline int64
	if d, ok := ctx.Deadline(); ok {
		deadline = d.UnixNano()
	}
	b := fastpath.AppendRequestHeader(make([]byte, 0, 4+fastpath.RequestHeader+proto.Size(in)), id, op, deadline)
	b, err := proto.MarshalOptions{}.MarshalAppend(b, in)
	if err != nil {
		c.forget(id)
		return status.Errorf(codes.Internal, "encode request: %v", err)
	}
	if err := c.w.Write(fastpath.FinishFrame(b)); err != nil {
		c.fail(err)
		return lostStatus(err)
	}
	select {
	case r := <-ch:
		if r.code != codes.OK {
			return status.Error(r.code, string(r.msg))
		}
		if err := proto.Unmarshal(r.msg, out); err != nil {
			return status.Errorf(codes.Internal, "decode response: %v", err)
		}
		return nil
	case <-ctx.Done():
		// The plugin ends a call at its deadline by itself; a cancellation it must be told.
		// A cancellation follows its request on the same connection, except for an inline
		// call: the plugin's reader of this connection is busy serving it, so it goes on
		// another one (request ids are unique across them).
		if c.forget(id) && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			via := c
			if op&fastInline != 0 {
				for _, o := range c.client.conns {
					if o != c && o.alive() && (via == c || o.inline.Load() == 0) {
						via = o
					}
				}
			}
			_ = via.w.Write(fastpath.FinishFrame(fastpath.AppendRequestHeader(nil, id, fastCancel, 0)))
		}
		return status.FromContextError(ctx.Err()).Err()
	}
}

// forget drops a pending call; it reports whether the call was still waiting.
func (c *fastConn) forget(id uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.pending[id]
	delete(c.pending, id)
	return ok
}

// read delivers response frames to their calls until the connection breaks.
func (c *fastConn) read() {
	r := bufio.NewReaderSize(c.conn, 64<<10)
	for {
		buf, err := fastpath.ReadFrame(r, fastpath.ResponseHeader, fastMaxFrame)
		if err != nil {
			c.fail(err)
			return
		}
		id := binary.LittleEndian.Uint32(buf)
		c.mu.Lock()
		ch := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ch != nil {
			ch <- fastResult{code: codes.Code(buf[4]), msg: buf[fastpath.ResponseHeader:]}
		}
	}
}

// fail marks the connection broken, closes it and fails every waiting call as
// unavailable: the plugin may have died, and what it did with them is unknown.
func (c *fastConn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	pending := c.pending
	c.pending = map[uint32]chan fastResult{}
	c.mu.Unlock()
	_ = c.conn.Close()
	st := status.Convert(lostStatus(err))
	for _, ch := range pending {
		ch <- fastResult{code: st.Code(), msg: []byte(st.Message())}
	}
}

// lostStatus is the error of a call whose connection broke.
func lostStatus(err error) error {
	return status.Errorf(codes.Unavailable, "storage plugin connection lost: %v", err)
}
