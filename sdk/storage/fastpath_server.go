package storage

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
)

// fastAcceptWindow bounds how long an offered socket waits for the host's connections
// before it is removed.
const fastAcceptWindow = 10 * time.Second

// fastServer is the plugin's side of the fast path: it serves frames with the gRPC
// service's own methods (validation, panics, error mapping included).
type fastServer struct {
	srv *server

	mu        sync.Mutex
	closed    bool
	listeners map[*net.UnixListener]string // to the directory of their socket
	conns     map[net.Conn]struct{}
	calls     sync.WaitGroup // requests being served
	ctx       context.Context
	cancel    context.CancelFunc
}

func newFastServer(srv *server) *fastServer {
	ctx, cancel := context.WithCancel(context.Background())
	return &fastServer{
		srv: srv, ctx: ctx, cancel: cancel,
		listeners: map[*net.UnixListener]string{}, conns: map[net.Conn]struct{}{},
	}
}

// open creates the socket of one OpenFastPath call and accepts its connections in the
// background.
func (f *fastServer) open(req *limitv1.OpenFastPathRequest) (*limitv1.OpenFastPathResponse, error) {
	if req.GetVersion() != fastVersion {
		return nil, status.Errorf(codes.FailedPrecondition, "fast path version %d not offered (this plugin speaks %d)", req.GetVersion(), fastVersion)
	}
	n := int(req.GetConnections())
	if n < 1 || n > fastMaxConnections {
		return nil, status.Errorf(codes.InvalidArgument, "fast path: %d connections requested, want 1 to %d", n, fastMaxConnections)
	}
	if err := peerCheckSupported(); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "fast path: %v", err)
	}
	token := make([]byte, fastTokenSize)
	if _, err := rand.Read(token); err != nil {
		return nil, status.Errorf(codes.Internal, "fast path token: %v", err)
	}
	dir, err := os.MkdirTemp("", "limit-storage-") // mode 0700
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "fast path directory: %v", err)
	}
	path := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, status.Errorf(codes.FailedPrecondition, "fast path socket: %v", err)
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		_ = l.Close()
		_ = os.RemoveAll(dir)
		return nil, status.Error(codes.Unavailable, "plugin is shutting down")
	}
	f.listeners[l] = dir
	f.mu.Unlock()
	go f.accept(l, dir, token, n)
	return &limitv1.OpenFastPathResponse{Version: fastVersion, Network: "unix", Address: path, Token: token}, nil
}

// accept takes n authenticated connections on l, then removes the socket and its directory,
// so nothing else can connect later.
func (f *fastServer) accept(l *net.UnixListener, dir string, token []byte, n int) {
	defer func() {
		f.mu.Lock()
		delete(f.listeners, l)
		f.mu.Unlock()
		_ = l.Close()
		_ = os.RemoveAll(dir)
	}()
	_ = l.SetDeadline(time.Now().Add(fastAcceptWindow))
	sess := &fastSession{cancels: map[uint32]context.CancelFunc{}}
	for accepted := 0; accepted < n; {
		c, err := l.AcceptUnix()
		if err != nil {
			return // window over, or shutting down
		}
		if err := authenticate(c, token); err != nil {
			_ = c.Close()
			continue
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			_ = c.Close()
			return
		}
		f.conns[c] = struct{}{}
		f.mu.Unlock()
		accepted++
		go f.serve(c, sess)
	}
}

// authenticate checks the peer's user and its token, and acknowledges it.
func authenticate(c *net.UnixConn, token []byte) error {
	if err := checkPeer(c, false); err != nil {
		return err
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, fastTokenSize)
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(got, token) != 1 {
		return errors.New("wrong token")
	}
	if _, err := c.Write([]byte{fastAck}); err != nil {
		return err
	}
	return c.SetDeadline(time.Time{})
}

// serverConn is one connection of the fast path.
type serverConn struct {
	f *fastServer
	c *net.UnixConn
	r *bufio.Reader
	w *frameWriter

	sess *fastSession
}

// fastSession is what the connections of one OpenFastPath share: request ids are unique
// across them, so the host can cancel a request on another connection than the one
// serving it (whose reader may be busy serving it inline).
type fastSession struct {
	mu      sync.Mutex
	cancels map[uint32]context.CancelFunc // of the requests being served
}

// serve starts serving the requests of c.
func (f *fastServer) serve(c *net.UnixConn, sess *fastSession) {
	sc := &serverConn{f: f, c: c, r: bufio.NewReaderSize(c, 64<<10), w: &frameWriter{conn: c}, sess: sess}
	sc.read()
}

// request is a request read off a connection and registered for cancellation.
type request struct {
	ctx    context.Context
	cancel context.CancelFunc
	id     uint32
	op     byte
	inline bool
	msg    []byte
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
		if !req.inline {
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
// when the connection is done (closed, broken, or speaking something else).
func (sc *serverConn) next() (*request, bool) {
	f := sc.f
	var hdr [4]byte
	if _, err := io.ReadFull(sc.r, hdr[:]); err != nil {
		sc.close()
		return nil, false
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n < fastRequestHeader || n > fastMaxFrame {
		sc.close() // the host speaks something else: drop it
		return nil, false
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(sc.r, buf); err != nil {
		sc.close()
		return nil, false
	}
	req := &request{id: binary.LittleEndian.Uint32(buf), op: buf[4] &^ fastInline, inline: buf[4]&fastInline != 0, msg: buf[fastRequestHeader:]}
	if req.op == fastCancel {
		sc.sess.mu.Lock()
		if cancel := sc.sess.cancels[req.id]; cancel != nil {
			cancel()
		}
		sc.sess.mu.Unlock()
		return nil, true
	}
	req.ctx, req.cancel = context.WithCancel(f.ctx)
	if deadline := int64(binary.LittleEndian.Uint64(buf[5:])); deadline != 0 {
		req.ctx, req.cancel = context.WithDeadline(f.ctx, time.Unix(0, deadline))
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		req.cancel()
		sc.close()
		return nil, false
	}
	f.calls.Add(1) // under f.mu, so shutdown's Wait never races an Add
	f.mu.Unlock()
	sc.sess.mu.Lock()
	sc.sess.cancels[req.id] = req.cancel
	sc.sess.mu.Unlock()
	return req, true
}

// serve answers a request.
func (sc *serverConn) serve(req *request) {
	frame := sc.f.handle(req.ctx, req.id, req.op, req.msg)
	sc.sess.mu.Lock()
	delete(sc.sess.cancels, req.id)
	sc.sess.mu.Unlock()
	req.cancel()
	_ = sc.w.write(frame) // a broken connection is the host's to notice
	sc.f.calls.Done()
}

// close ends the connection after its reading failed: the session's requests still being
// served are cancelled, as gRPC cancels the calls of a client that went away.
func (sc *serverConn) close() {
	sc.sess.mu.Lock()
	for _, cancel := range sc.sess.cancels {
		cancel()
	}
	sc.sess.mu.Unlock()
	f := sc.f
	f.mu.Lock()
	if !f.closed {
		delete(f.conns, sc.c) // shutdown closes the rest after the calls are answered
		_ = sc.c.Close()
	}
	f.mu.Unlock()
}

// handle serves one request with the gRPC service's method and returns the response frame.
func (f *fastServer) handle(ctx context.Context, id uint32, op byte, msg []byte) []byte {
	resp, err := f.dispatch(ctx, op, msg)
	if err != nil {
		st := status.Convert(err)
		return finishFrame(append(appendResponseHeader(nil, id, byte(st.Code())), st.Message()...))
	}
	b := appendResponseHeader(make([]byte, 0, fastResponseHeader+4+proto.Size(resp)), id, byte(codes.OK))
	b, err = proto.MarshalOptions{}.MarshalAppend(b, resp)
	if err != nil {
		st := status.Newf(codes.Internal, "encode response: %v", err)
		return finishFrame(append(appendResponseHeader(nil, id, byte(st.Code())), st.Message()...))
	}
	return finishFrame(b)
}

// dispatch decodes msg as op's request and calls the gRPC method.
func (f *fastServer) dispatch(ctx context.Context, op byte, msg []byte) (proto.Message, error) {
	s := f.srv
	switch op {
	case fastGet:
		return serveOne(ctx, msg, s.Get)
	case fastPut:
		return serveOne(ctx, msg, s.Put)
	case fastDelete:
		return serveOne(ctx, msg, s.Delete)
	case fastScan:
		return serveOne(ctx, msg, s.Scan)
	case fastBatch:
		return serveOne(ctx, msg, s.Batch)
	case fastCompareAndSwap:
		return serveOne(ctx, msg, s.CompareAndSwap)
	case fastPing:
		return &limitv1.PutResponse{}, nil // any empty message
	}
	return nil, status.Errorf(codes.Unimplemented, "fast path: unknown operation %d", op)
}

// serveOne decodes a request of type Req and passes it to method.
func serveOne[Req any, PReq interface {
	*Req
	proto.Message
}, Resp proto.Message](ctx context.Context, msg []byte, method func(context.Context, PReq) (Resp, error)) (proto.Message, error) {
	req := PReq(new(Req))
	if err := proto.Unmarshal(msg, req); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "decode request: %v", err)
	}
	resp, err := method(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// shutdown stops taking requests, waits for the ones being served and closes every
// connection; the implementation may be closed after it returns.
func (f *fastServer) shutdown() {
	f.mu.Lock()
	f.closed = true
	for l, dir := range f.listeners {
		// Here rather than in accept, whose goroutine may not run again before the
		// process exits.
		_ = l.Close()
		_ = os.RemoveAll(dir)
	}
	for c := range f.conns {
		if uc, ok := c.(*net.UnixConn); ok {
			_ = uc.CloseRead()
		}
	}
	f.mu.Unlock()
	f.calls.Wait()
	f.mu.Lock()
	for c := range f.conns {
		_ = c.Close()
	}
	f.conns = map[net.Conn]struct{}{}
	f.mu.Unlock()
	f.cancel()
}
