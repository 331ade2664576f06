package fastpath

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/base"
)

// Unary calls: for a kind whose frequent calls are unary (storage calls, a governance
// rule's Evaluate), a request frame carries the gRPC request message of its op and the
// answer frame carries code 0 and the response message, or the gRPC code of the error and
// its text. The kind's cancel op (no message, no answer) cancels the request with the
// frame's id. Requests are served concurrently.

// MaxFrame bounds a frame's length: gRPC's message size limit and the header.
const MaxFrame = base.MaxMessageSize + 64

// UnaryHandler serves one request: it decodes msg as op's request message and returns
// the response message, or an error that is a gRPC status.
type UnaryHandler func(ctx context.Context, op byte, msg []byte) (proto.Message, error)

// ServeUnary serves the unary requests of c with handle until c closes (see Serve).
func (s *Server) ServeUnary(c *net.UnixConn, sess *Session, cancelOp byte, handle UnaryHandler) {
	s.Serve(c, sess, cancelOp, func(ctx context.Context, id uint32, op byte, msg []byte, w *FrameWriter) {
		_ = w.Write(Answer(ctx, id, op, msg, handle)) // a broken connection is the host's to notice
	})
}

// RequestHandler serves request id: it answers with as many frames as its kind's
// protocol says, written to w.
type RequestHandler func(ctx context.Context, id uint32, op byte, msg []byte, w *FrameWriter)

// Serve reads the requests of c until it closes and serves each on a goroutine of its own
// with handle, or on the reading goroutine when the host marked it Inline (the host then
// sends nothing more on c until it is answered); cancelOp is the kind's cancel op. A
// request's context carries the host's deadline and ends when the host cancels it (on any
// connection of sess: an inline request's cancellation comes on another), when a
// connection of sess closes (as gRPC cancels the calls of a client that went away) or at
// Shutdown. It serves an offered connection; sess holds the requests of the connections of
// one OpenFastPath call (nil: c's alone).
func (s *Server) Serve(c *net.UnixConn, sess *Session, cancelOp byte, handle RequestHandler) {
	if sess == nil {
		sess = NewSession()
	}
	w := NewFrameWriter(c)
	r := bufio.NewReaderSize(c, 64<<10)
	defer func() {
		sess.CancelAll() // the host went away, as it closes its connections together
		s.Drop(c)
	}()
	for {
		req, ok := s.ReadRequest(r, sess, cancelOp)
		if !ok {
			return // closed, broken, the host speaks something else, or shutting down
		}
		if req == nil {
			continue // a cancellation
		}
		serve := func() {
			defer s.End()
			handle(req.Ctx, req.ID, req.Op, req.Msg, w)
			req.Done()
		}
		if req.Inline {
			serve()
			continue
		}
		go serve()
	}
}

// Request is a request read off a connection of the fast path by ReadRequest.
type Request struct {
	// Ctx carries the host's deadline and ends when the host cancels the request, when
	// its session's connections close, or at Shutdown.
	Ctx    context.Context
	cancel context.CancelFunc
	sess   *Session // where it is registered for cancellation
	ID     uint32
	Op     byte // without Inline
	// Inline tells that the host marked the request Inline: it sends nothing more on the
	// connection until it is answered, so it may be served on the reading goroutine.
	Inline bool
	Msg    []byte
}

// Done forgets the served request in its session and releases its context. The caller
// then calls the Server's End.
func (r *Request) Done() {
	r.sess.Done(r.ID)
	r.cancel()
}

// ReadRequest reads the next frame of a connection through r. A request comes back begun
// (Server.Begin) and registered in sess for cancellation; a cancellation (cancelOp) is
// acted on and comes back nil. False means the connection is done: closed, broken,
// speaking something else, or the server shutting down; the caller then drops it.
func (s *Server) ReadRequest(r *bufio.Reader, sess *Session, cancelOp byte) (*Request, bool) {
	buf, err := ReadFrame(r, RequestHeader, MaxFrame)
	if err != nil {
		return nil, false
	}
	req := &Request{sess: sess, ID: binary.LittleEndian.Uint32(buf), Op: buf[4] &^ Inline, Inline: buf[4]&Inline != 0, Msg: buf[RequestHeader:]}
	if req.Op == cancelOp {
		sess.Cancel(req.ID)
		return nil, true
	}
	if deadline := int64(binary.LittleEndian.Uint64(buf[5:])); deadline != 0 {
		req.Ctx, req.cancel = context.WithDeadline(s.Context(), time.Unix(0, deadline))
	} else {
		// Not one context made and replaced: one never cancelled stays among the server
		// context's children until Shutdown.
		req.Ctx, req.cancel = context.WithCancel(s.Context())
	}
	if !s.Begin() {
		req.cancel()
		return nil, false
	}
	sess.Register(req.ID, req.cancel)
	return req, true
}

// Session holds the requests being served on the connections of one OpenFastPath call,
// so that the host can cancel a request on another connection than the one serving it:
// an inline request's connection is busy with it. Request ids are unique across them.
type Session struct {
	mu      sync.Mutex
	cancels map[uint32]context.CancelFunc
	// early holds the cancellations that came before their request (on another
	// connection, whose reader took them first); the request is cancelled as it arrives.
	// The cancellation of a request already answered lands here too, so the set is
	// bounded (maxEarlyCancels) rather than kept for good.
	early map[uint32]struct{}
}

// maxEarlyCancels bounds Session.early: when it is full it is emptied, which can only
// lose the cancellation of a request whose reader is late by that many cancellations.
const maxEarlyCancels = 256

// NewSession returns an empty session.
func NewSession() *Session { return &Session{cancels: map[uint32]context.CancelFunc{}} }

// Register records request id's cancel, calling it at once if its cancellation came first.
func (s *Session) Register(id uint32, cancel context.CancelFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cancels[id] = cancel
	if _, ok := s.early[id]; ok {
		delete(s.early, id)
		cancel()
	}
}

// Cancel cancels request id, or remembers the cancellation until the request arrives.
func (s *Session) Cancel(id uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cancel := s.cancels[id]; cancel != nil {
		cancel()
		return
	}
	if s.early == nil || len(s.early) >= maxEarlyCancels {
		s.early = map[uint32]struct{}{}
	}
	s.early[id] = struct{}{}
}

// Done forgets request id once it is answered.
func (s *Session) Done(id uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.cancels, id)
}

// CancelAll cancels every request being served.
func (s *Session) CancelAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cancel := range s.cancels {
		cancel()
	}
}

// Invoke decodes msg as a request of type Req and passes it to method (a gRPC service's
// method), for a UnaryHandler.
func Invoke[Req any, PReq interface {
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

// Answer runs handle for request id and returns the answer frame: the response message,
// or the error's code and text (a panic is INTERNAL, a response over the message size limit
// RESOURCE_EXHAUSTED, as over gRPC).
func Answer(ctx context.Context, id uint32, op byte, msg []byte, handle UnaryHandler) (frame []byte) {
	fail := func(err error) []byte { return ErrorFrame(id, err) }
	defer func() {
		if p := recover(); p != nil {
			frame = fail(status.Errorf(codes.Internal, "plugin panic: %v", p))
		}
	}()
	resp, err := handle(ctx, op, msg)
	if err != nil {
		return fail(err)
	}
	if n := proto.Size(resp); n > base.MaxMessageSize {
		return fail(status.Errorf(codes.ResourceExhausted, "response of %d bytes exceeds the message size limit of %d", n, base.MaxMessageSize))
	}
	b := AppendResponseHeader(make([]byte, 0, 4+ResponseHeader+proto.Size(resp)), id, byte(codes.OK))
	b, err = proto.MarshalOptions{}.MarshalAppend(b, resp)
	if err != nil {
		return fail(status.Errorf(codes.Internal, "encode response: %v", err))
	}
	return FinishFrame(b)
}

// ErrBroken is what a UnaryClient's calls return when no connection can take a call,
// before sending anything: every one is broken, or held by an inline call the plugin has
// not answered (see inlineAbandoned). The caller may make the call over gRPC instead.
var ErrBroken = errors.New("every fast path connection is broken")

// Inline, or'ed into op by CallRead and CallLong, lets the plugin serve the request on
// the goroutine that read it (a plugin that knows the flag: sdk/storage's, and Serve's for
// a kind whose framing version says so): starting a
// goroutine per request costs a thread wake-up on a busy machine, so a call sent on a
// connection where nothing else is in flight is answered without one, and nothing more is
// sent on that connection until its answer is back (the client has others; a long call is
// sent so only while another connection stays unclaimed).
const Inline byte = 0x80

// UnaryClient is the host's side of a unary fast path: calls from many goroutines share
// its connections, told apart by id (unique across them, so a cancellation may travel on
// another connection than its call).
type UnaryClient struct {
	conns []*unaryConn
	// ctl carries only cancellations: on a connection of calls one may wait behind a
	// request of megabytes that the plugin's reader, busy with an inline call or short of
	// processor, takes long to read (eight 10 MB prompts at once: cancellations came 2 s
	// late, and the rule scanned on for nobody meanwhile).
	ctl  *unaryConn
	next atomic.Uint32
	ids  atomic.Uint32
	opts UnaryOptions
}

// UnaryOptions describe a kind's unary fast path to DialUnary.
type UnaryOptions struct {
	// Version is the kind's framing version.
	Version uint32
	// Connections is how many connections carry calls; one more carries cancellations,
	// so the plugin must have been asked for Requested(Connections).
	Connections int
	// CancelOp is the kind's cancel op.
	CancelOp byte
	// What names the plugin in the errors of calls whose connection broke ("storage
	// plugin").
	What string
}

// unaryConn is one connection of a UnaryClient.
//
// Its answers are read by the calls waiting for them, not by a goroutine of its own: a
// reader goroutine handing each answer to its call cost a goroutine switch and, on two
// cores, the wake-up of a second thread per call (a bare echo took twice as long that
// way). A call whose answer has not come takes the reading turn (rd) when it is free and
// reads until its answer is in, handing the others' answers it reads to their calls; when
// it stops with calls still waiting, it signals turn, and one of those takes over. A call
// whose context ends while it reads interrupts its read with a deadline; a frame it had
// begun stays in the buffer for the next reader.
type unaryConn struct {
	client *UnaryClient
	conn   *net.UnixConn
	w      *FrameWriter

	inflight atomic.Int32 // calls sent and not yet answered
	inline   atomic.Int32 // inlineRead, inlineLong or inlineAbandoned while an inline call is claimed or in flight

	mu      sync.Mutex
	pending map[uint32]chan unaryResult
	err     error // set once the connection broke

	rd      sync.Mutex    // held by the call reading answers
	r       *bufio.Reader // under rd
	big     []byte        // under rd: a frame larger than r's buffer, begun
	bigRead int           // under rd: how much of big is read
	turn    chan struct{} // cap 1: the reading turn is free and calls are waiting
}

type unaryResult struct {
	code codes.Code
	msg  []byte
}

// Requested is how many connections to ask a plugin for in OpenFastPath for a UnaryClient
// of n connections of calls: one more, for cancellations.
func Requested(n int) uint32 { return uint32(n + 1) }

// DialUnary connects to the socket a plugin offered in r (see CheckOffer and Dial).
func DialUnary(ctx context.Context, r *limitv1.OpenFastPathResponse, opts UnaryOptions) (*UnaryClient, error) {
	if err := CheckOffer(r, opts.Version); err != nil {
		return nil, err
	}
	c := &UnaryClient{opts: opts}
	for i := range opts.Connections + 1 {
		uc, err := Dial(ctx, r.GetAddress(), r.GetToken())
		if err != nil {
			c.Close()
			return nil, err
		}
		if i == opts.Connections {
			c.ctl = newUnaryConn(c, uc)
			break
		}
		c.conns = append(c.conns, newUnaryConn(c, uc))
	}
	return c, nil
}

// newUnaryConn returns c's connection over conn.
func newUnaryConn(c *UnaryClient, conn *net.UnixConn) *unaryConn {
	return &unaryConn{
		client: c, conn: conn, w: NewFrameWriter(conn), pending: map[uint32]chan unaryResult{},
		r: bufio.NewReaderSize(conn, 64<<10), turn: make(chan struct{}, 1),
	}
}

// Alive tells whether a connection still works (and is not held by an abandoned inline
// call); when none does, the caller goes back to gRPC. A connection broken while no call
// waited on it is found by the next call made on it, whose request then fails as not sent.
func (c *UnaryClient) Alive() bool { return c.pick() != nil }

// Claims of a connection for an inline call (unaryConn.inline).
const (
	inlineRead = 1
	inlineLong = 2
	// inlineAbandoned marks a connection whose inline call's caller gave up (its context
	// ended) before the plugin answered: the plugin's reader of that connection is still
	// serving the call (a rule or a storage ignoring its context), so anything sent on the
	// connection would wait behind it. No call is sent on it until the answer comes (see
	// settle) or the connection is closed.
	inlineAbandoned = 3
)

// pick returns a working connection, or nil when every one is broken or abandoned. It
// prefers one that serves no inline call, then one serving an inline read (quick) over one
// serving an inline long call (a write, which may wait for a disk sync); never one whose
// inline call was abandoned unanswered.
func (c *UnaryClient) pick() *unaryConn {
	n := uint32(len(c.conns))
	start := c.next.Add(1)
	var fallback *unaryConn
	for i := range n {
		conn := c.conns[(start+i)%n]
		if !conn.alive() {
			continue
		}
		switch conn.inline.Load() {
		case 0:
			return conn
		case inlineRead:
			if fallback == nil || fallback.inline.Load() != inlineRead {
				fallback = conn
			}
		case inlineAbandoned:
		default:
			if fallback == nil {
				fallback = conn
			}
		}
	}
	return fallback
}

// pickInline returns a connection and op for a call the plugin may serve inline: an idle
// connection, claimed (as kind), when there is one; else what pick returns. A long call
// (a write) is only served inline while another connection stays unclaimed, so the calls
// made during it (a disk sync) never have to queue behind it. The idle connection taken is
// the first in order, not the next in turn: calls made one after the other then keep to
// one connection, whose reader in the plugin is the goroutine that served the last one
// (16 merged writers through the bolt plugin 0.52-0.57 → 0.59-0.61 of in-process in three
// alternating runs of WriteFloor; see BENCHMARKS.md).
func (c *UnaryClient) pickInline(op byte, kind int32) (*unaryConn, byte) {
	for _, conn := range c.conns {
		if conn.inflight.Load() != 0 || !conn.inline.CompareAndSwap(0, kind) {
			continue
		}
		if conn.inflight.Load() == 0 && conn.alive() && (kind == inlineRead || c.unclaimedBesides(conn)) {
			return conn, op | Inline
		}
		conn.inline.Store(0)
		if kind == inlineLong {
			break // no connection would stay free
		}
	}
	return c.pick(), op
}

// unclaimedBesides tells whether a working connection other than conn serves no inline
// call.
func (c *UnaryClient) unclaimedBesides(conn *unaryConn) bool {
	for _, o := range c.conns {
		if o != conn && o.inline.Load() == 0 && o.alive() {
			return true
		}
	}
	return false
}

// Close closes every connection.
func (c *UnaryClient) Close() {
	for _, conn := range c.conns {
		conn.fail(errors.New("client closed"))
	}
	if c.ctl != nil {
		c.ctl.fail(errors.New("client closed"))
	}
}

// Call sends in as op and decodes the answer into out. Its errors are gRPC statuses, as
// a gRPC client's: the call's code, UNAVAILABLE when the connection broke, CANCELED or
// DEADLINE_EXCEEDED when ctx ended first, RESOURCE_EXHAUSTED for a request over the
// message size limit; or ErrBroken when no connection works.
func (c *UnaryClient) Call(ctx context.Context, op byte, in, out proto.Message) error {
	conn := c.pick()
	if conn == nil {
		return ErrBroken
	}
	return conn.call(ctx, op, in, nil, out)
}

// CallRead is Call for a read, which the plugin may serve inline (see Inline).
func (c *UnaryClient) CallRead(ctx context.Context, op byte, in, out proto.Message) error {
	conn, op := c.pickInline(op, inlineRead)
	if conn == nil {
		return ErrBroken
	}
	return conn.call(ctx, op, in, nil, out)
}

// CallLong is Call for a call that may take long (a write waits for a disk sync, an
// evaluation of a long text for the rule), which the plugin may serve inline (see Inline)
// when another connection stays free for the calls made meanwhile (see pickInline): the
// plugin then serves it on the goroutine that read it, without starting one.
func (c *UnaryClient) CallLong(ctx context.Context, op byte, in, out proto.Message) error {
	conn, op := c.pickInline(op, inlineLong)
	if conn == nil {
		return ErrBroken
	}
	return conn.call(ctx, op, in, nil, out)
}

// Encoded is a request its caller encodes itself, in the wire form of its message, without
// building the message: Size is its length, Append appends it.
type Encoded interface {
	Size() int
	Append(b []byte) []byte
}

// CallLongEncoded is CallLong for a request encoded by its caller.
func (c *UnaryClient) CallLongEncoded(ctx context.Context, op byte, in Encoded, out proto.Message) error {
	conn, op := c.pickInline(op, inlineLong)
	if conn == nil {
		return ErrBroken
	}
	return conn.call(ctx, op, nil, in, out)
}

func (c *unaryConn) alive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil
}

// call makes a call of request in, or of enc when in is nil.
func (c *unaryConn) call(ctx context.Context, op byte, in proto.Message, enc Encoded, out proto.Message) error {
	c.inflight.Add(1)
	abandoned := false // the connection is released by settle instead
	defer func() {
		if abandoned {
			return
		}
		c.inflight.Add(-1)
		if op&Inline != 0 {
			c.inline.Store(0)
		}
	}()
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	var size int
	if enc != nil {
		size = enc.Size()
	} else {
		size = proto.Size(in)
	}
	if size > base.MaxMessageSize {
		return status.Errorf(codes.ResourceExhausted, "request of %d bytes exceeds the message size limit of %d", size, base.MaxMessageSize)
	}
	ch := make(chan unaryResult, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return c.notSent(fmt.Errorf("%w: %w", ErrNotSent, err))
	}
	id := c.client.ids.Add(1)
	c.pending[id] = ch
	c.mu.Unlock()
	var deadline int64
	if d, ok := ctx.Deadline(); ok {
		deadline = d.UnixNano()
	}
	b := AppendRequestHeader(make([]byte, 0, 4+RequestHeader+size), id, op, deadline)
	if enc != nil {
		b = enc.Append(b)
	} else {
		var err error
		if b, err = (proto.MarshalOptions{}).MarshalAppend(b, in); err != nil {
			c.forget(id)
			return status.Errorf(codes.Internal, "encode request: %v", err)
		}
	}
	if err := c.w.Write(FinishFrame(b)); err != nil {
		c.fail(err)
		if errors.Is(err, ErrNotSent) {
			return c.notSent(err)
		}
		return c.lost(err)
	}
	r, ok := c.await(ctx, ch)
	if !ok {
		// The plugin ends a call at its deadline by itself; a cancellation it must be told.
		// It goes on the connection kept for them (request ids are unique across
		// connections; one that overtakes its request waits for it in the plugin); if
		// that one broke, on this one, or for an inline call, whose reader in the plugin
		// is busy serving it, on another.
		//
		// An inline call stays pending: the plugin's reader of this connection serves it
		// until it answers, which a handler ignoring its context does late (a rule asleep
		// for 30 s). Until then the connection stays claimed, so later calls go to the
		// others instead of queueing behind it (see settle).
		var waiting bool
		if op&Inline != 0 {
			waiting = c.isPending(id)
		} else {
			waiting = c.forget(id)
		}
		if waiting && op&Inline != 0 {
			abandoned = true
			c.inline.Store(inlineAbandoned)
			go c.settle(ch)
		}
		if waiting && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cancel := FinishFrame(AppendRequestHeader(nil, id, c.client.opts.CancelOp, 0))
			if ctl := c.client.ctl; ctl == nil || ctl.w.Write(cancel) != nil {
				via := c
				if op&Inline != 0 {
					for _, o := range c.client.conns {
						if o != c && o.alive() && o.inline.Load() != inlineAbandoned && (via == c || o.inline.Load() == 0) {
							via = o
						}
					}
				}
				_ = via.w.Write(cancel)
			}
		}
		return status.FromContextError(ctx.Err()).Err()
	}
	if r.code != codes.OK {
		return status.Error(r.code, string(r.msg))
	}
	if err := proto.Unmarshal(r.msg, out); err != nil {
		return status.Errorf(codes.Internal, "decode response: %v", err)
	}
	return nil
}

// settle waits for the answer of an inline call its caller abandoned (ch), reading the
// connection meanwhile, and then releases the connection for other calls. It returns
// when the answer comes or the connection is closed (fail answers every pending call).
func (c *unaryConn) settle(ch chan unaryResult) {
	c.await(context.Background(), ch)
	c.inflight.Add(-1)
	c.inline.Store(0)
}

// isPending tells whether call id still waits for its answer.
func (c *unaryConn) isPending(id uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.pending[id]
	return ok
}

// forget drops a pending call; it reports whether the call was still waiting.
func (c *unaryConn) forget(id uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.pending[id]
	delete(c.pending, id)
	return ok
}

// await waits for the answer of the call whose channel is ch, reading answers while it
// holds the reading turn. It returns false when ctx ended first.
func (c *unaryConn) await(ctx context.Context, ch chan unaryResult) (unaryResult, bool) {
	signalled := false // this call took a turn signal, which it must pass on if it does not read
	defer func() {
		if signalled {
			c.handOn()
		}
	}()
	for {
		select {
		case r := <-ch:
			return r, true
		case <-ctx.Done():
			return unaryResult{}, false
		default:
		}
		if c.rd.TryLock() {
			signalled = false
			c.readUntil(ctx, ch)
			c.rd.Unlock()
			c.handOn()
			continue
		}
		select {
		case r := <-ch:
			return r, true
		case <-ctx.Done():
			return unaryResult{}, false
		case <-c.turn:
			signalled = true
		}
	}
}

// handOn tells a waiting call, if any, that the reading turn is free.
func (c *unaryConn) handOn() {
	c.mu.Lock()
	waiting := len(c.pending) > 0
	c.mu.Unlock()
	if waiting {
		select {
		case c.turn <- struct{}{}:
		default: // already signalled
		}
	}
}

// readUntil reads answers and hands them to their calls until ch holds one, ctx ends or
// the connection breaks. The caller holds rd.
func (c *unaryConn) readUntil(ctx context.Context, ch chan unaryResult) {
	var reading atomic.Bool
	reading.Store(true)
	stop := context.AfterFunc(ctx, func() {
		if reading.Load() {
			_ = c.conn.SetReadDeadline(aLongTimeAgo) // interrupts the read below
		}
	})
	defer func() {
		reading.Store(false)
		stop()
	}()
	for len(ch) == 0 && ctx.Err() == nil {
		buf, err := c.readFrame()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// This call's context ended (checked above), or a deadline an earlier
			// reader's ended context set as that reader left: cleared and read again.
			_ = c.conn.SetReadDeadline(time.Time{})
			continue
		}
		if err != nil {
			c.fail(err)
			return
		}
		id := binary.LittleEndian.Uint32(buf)
		c.mu.Lock()
		to := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if to != nil {
			to <- unaryResult{code: codes.Code(buf[4]), msg: buf[ResponseHeader:]}
		}
	}
}

// aLongTimeAgo is a deadline in the past, which ends a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// readFrame reads one answer frame and returns the bytes after its length. A read
// interrupted by a deadline loses nothing: a frame that fits the buffer is taken from it
// only once whole, and a larger one, read straight into its own slice, is kept begun
// (big) for the next reader to finish.
func (c *unaryConn) readFrame() ([]byte, error) {
	if c.big == nil {
		hdr, err := c.r.Peek(4)
		if err != nil {
			return nil, err
		}
		n := binary.LittleEndian.Uint32(hdr)
		if n < ResponseHeader || n > MaxFrame {
			return nil, fmt.Errorf("bad frame length %d", n)
		}
		if 4+int(n) <= c.r.Size() {
			if _, err := c.r.Peek(4 + int(n)); err != nil {
				return nil, err
			}
			buf := make([]byte, n)
			_, _ = c.r.Discard(4)
			_, _ = io.ReadFull(c.r, buf) // buffered: cannot fail
			return buf, nil
		}
		_, _ = c.r.Discard(4)
		c.big, c.bigRead = make([]byte, n), 0
	}
	for c.bigRead < len(c.big) {
		k, err := c.r.Read(c.big[c.bigRead:])
		c.bigRead += k
		if err != nil {
			return nil, err
		}
	}
	buf := c.big
	c.big = nil
	return buf, nil
}

// fail marks the connection broken, closes it and fails every waiting call as
// unavailable: the plugin may have died, and what it did with them is unknown.
func (c *unaryConn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	pending := c.pending
	c.pending = map[uint32]chan unaryResult{}
	c.mu.Unlock()
	_ = c.conn.Close()
	st := status.Convert(c.lost(sentCause(err)))
	for _, ch := range pending {
		ch <- unaryResult{code: st.Code(), msg: []byte(st.Message())}
	}
}

// sentCause is err without its ErrNotSent mark. A call whose own request failed to go out
// whole breaks the connection for the calls waiting on it, whose requests went out: what
// became of those is unknown, and their error must not say "request not sent" (callers
// would take it for safe to make again).
func sentCause(err error) error {
	if u, ok := err.(interface{ Unwrap() []error }); ok && errors.Is(err, ErrNotSent) {
		for _, e := range u.Unwrap() {
			if e != ErrNotSent {
				return sentCause(e)
			}
		}
	}
	return err
}

// lost is the error of a call whose connection broke.
func (c *unaryConn) lost(err error) error {
	return status.Errorf(codes.Unavailable, "%s connection lost: %v", c.client.opts.What, err)
}

// notSent is the error of a call whose connection broke before its request was sent
// whole: UNAVAILABLE, as lost, and it wraps ErrNotSent, since the plugin did nothing
// with the call.
func (c *unaryConn) notSent(err error) error {
	return &notSentError{status.New(codes.Unavailable, fmt.Sprintf("%s connection lost: %v", c.client.opts.What, err))}
}

// notSentError is a gRPC status that wraps ErrNotSent.
type notSentError struct{ st *status.Status }

func (e *notSentError) Error() string              { return e.st.Err().Error() }
func (e *notSentError) GRPCStatus() *status.Status { return e.st }
func (e *notSentError) Unwrap() error              { return ErrNotSent }
