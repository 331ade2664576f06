package storage

import (
	"bufio"
	"context"
	"encoding/binary"
	"net"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/internal/fastpath"
)

// fastServer is the plugin's side of the fast path: it serves frames with the gRPC
// service's own methods (validation, panics, error mapping included).
type fastServer struct {
	*fastpath.Server
	srv *server
}

// open offers the socket of one OpenFastPath call. Request ids are unique across its
// connections, so the host can cancel a request on another connection than the one
// serving it (whose reader may be busy serving it inline): they share a session.
func (f *fastServer) open(req *limitv1.OpenFastPathRequest) (*limitv1.OpenFastPathResponse, error) {
	sess := fastpath.NewSession()
	return f.Open(req, fastVersion, "limit-storage-", func(c *net.UnixConn) { f.serve(c, sess) })
}

// serverConn is one connection of the fast path.
type serverConn struct {
	f *fastServer
	c *net.UnixConn
	r *bufio.Reader
	w *fastpath.FrameWriter

	sess *fastpath.Session
}

// serve starts serving the requests of c.
func (f *fastServer) serve(c *net.UnixConn, sess *fastpath.Session) {
	sc := &serverConn{f: f, c: c, r: bufio.NewReaderSize(c, 64<<10), w: fastpath.NewFrameWriter(c), sess: sess}
	sc.read()
}

// read reads frames until a request arrives, starts the requests already buffered behind
// it on goroutines of their own, hands the reading over to a new goroutine and serves the
// request itself: it starts without waiting for another goroutine to be scheduled, a burst
// from concurrent callers reaches the backend together (group commit), and requests still
// run concurrently. A request marked fastInline is served without the hand-over, and
// reading goes on after it.
func (sc *serverConn) read() {
	for {
		req, ok := sc.next()
		if !ok {
			return
		}
		if req == nil {
			continue // a cancellation
		}
		for sc.buffered() {
			more, ok := sc.next()
			if !ok {
				sc.serve(req)
				return
			}
			if more != nil {
				go sc.serve(more)
			}
		}
		if !req.Inline {
			go sc.read()
			sc.serve(req)
			return
		}
		sc.serve(req)
	}
}

// buffered tells whether a whole frame is already in the read buffer.
func (sc *serverConn) buffered() bool {
	if sc.r.Buffered() < 4 {
		return false
	}
	h, err := sc.r.Peek(4)
	return err == nil && uint64(sc.r.Buffered()) >= 4+uint64(binary.LittleEndian.Uint32(h))
}

// next reads a frame. It returns the request, or nil after acting on a cancellation; false
// when the connection is done (closed, broken, speaking something else, or the plugin
// shutting down), which it then drops.
func (sc *serverConn) next() (*fastpath.Request, bool) {
	req, ok := sc.f.ReadRequest(sc.r, sc.sess, fastCancel)
	if !ok {
		sc.close() // closed, broken, the host speaks something else, or shutting down: drop it
	}
	return req, ok
}

// serve answers a request.
func (sc *serverConn) serve(req *fastpath.Request) {
	frame := sc.f.handle(req.Ctx, req.ID, req.Op, req.Msg)
	req.Done()
	_ = sc.w.Write(frame) // a broken connection is the host's to notice
	sc.f.End()
}

// close ends the connection after its reading failed: the session's requests still being
// served are cancelled, as gRPC cancels the calls of a client that went away.
func (sc *serverConn) close() {
	sc.sess.CancelAll()
	sc.f.Drop(sc.c)
}

// handle serves one request with the gRPC service's method and returns the answer frame.
func (f *fastServer) handle(ctx context.Context, id uint32, op byte, msg []byte) []byte {
	return fastpath.Answer(ctx, id, op, msg, f.dispatch)
}

// dispatch decodes msg as op's request and calls the gRPC method.
func (f *fastServer) dispatch(ctx context.Context, op byte, msg []byte) (proto.Message, error) {
	s := f.srv
	switch op {
	case fastGet:
		return fastpath.Invoke(ctx, msg, s.Get)
	case fastPut:
		return fastpath.Invoke(ctx, msg, s.Put)
	case fastDelete:
		return fastpath.Invoke(ctx, msg, s.Delete)
	case fastScan:
		return fastpath.Invoke(ctx, msg, s.Scan)
	case fastBatch:
		// Decoded straight into ops: writes are the calls on which the host's merged rounds
		// wait (see decodeBatch).
		ns, ops, err := decodeBatch(msg)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "decode request: %v", err)
		}
		return s.batch(ctx, ns, ops)
	case fastCompareAndSwap:
		return fastpath.Invoke(ctx, msg, s.CompareAndSwap)
	case fastPing:
		return &limitv1.PutResponse{}, nil // any empty message
	}
	return nil, status.Errorf(codes.Unimplemented, "fast path: unknown operation %d", op)
}
