package runner

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/internal/fastpath"
)

// The fast path carries Execute over a Unix socket the plugin opens on the host's request
// (OpenFastPath), with the safeguards and frames of sdk/internal/fastpath. A streamed gRPC
// call costs ~0.6 ms here before the runner does anything (a stream's set-up, and a
// hand-off between goroutines for every message on each side); a frame costs ~25 µs, so
// `print(1)` in a warm Python session takes a fraction of what it did.
//
// Requests: op fastExecute carries an ExecuteRequest; op fastCancel (no message, no
// answer) cancels the execution with the frame's id, as a gRPC client cancelling its
// stream does. The deadline field carries the caller's deadline. Answers: any number of
// frames with code 0, each an ExecuteEvent, the last of which holds the result; or a frame
// whose code is the gRPC status code the execution ended with, and its text. Executions are
// served concurrently on one connection (a session's runner process serves one session).
const (
	// fastVersion is the framing version above.
	fastVersion = 1

	fastExecute byte = 1
	fastCancel  byte = 2

	// fastPendingLimit is how many bytes of events may wait behind a write in progress
	// before the runner's emit waits for the host to read them (flow control).
	fastPendingLimit = 1 << 20
	// fastQueue is how many events of one execution the host holds before its reading of
	// the connection waits for the execution's consumer.
	fastQueue = 64
)

// fastServer is the plugin's side of the fast path.
type fastServer struct {
	*fastpath.Server
	srv *server
}

// open offers the socket of one OpenFastPath call.
func (f *fastServer) open(req *limitv1.OpenFastPathRequest) (*limitv1.OpenFastPathResponse, error) {
	return f.Open(req, fastVersion, "limit-runner-", f.serve)
}

// serve serves the executions requested on c, each on its own goroutine; when the
// connection goes, so does the host that asked: its executions are cancelled.
func (f *fastServer) serve(c *net.UnixConn) {
	f.Serve(c, nil, fastCancel, func(ctx context.Context, id uint32, op byte, msg []byte, w *fastpath.FrameWriter) {
		err := status.Errorf(codes.Unimplemented, "fast path: unknown operation %d", op)
		if op == fastExecute {
			err = f.execute(ctx, id, msg, w)
		}
		if err != nil {
			_ = w.Write(fastpath.ErrorFrame(id, err)) // a broken connection is the host's to notice
		}
	})
}

// execute runs one execution, sending its events as frames.
func (f *fastServer) execute(ctx context.Context, id uint32, msg []byte, w *fastpath.FrameWriter) error {
	req := new(limitv1.ExecuteRequest)
	if err := proto.Unmarshal(msg, req); err != nil {
		return status.Errorf(codes.InvalidArgument, "decode request: %v", err)
	}
	return f.srv.execute(ctx, req, func(ev *limitv1.ExecuteEvent) error {
		b := fastpath.AppendResponseHeader(make([]byte, 0, 4+fastpath.ResponseHeader+proto.Size(ev)), id, byte(codes.OK))
		b, err := proto.MarshalOptions{}.MarshalAppend(b, ev)
		if err != nil {
			return status.Errorf(codes.Internal, "encode event: %v", err)
		}
		if n := len(b) - 4 - fastpath.ResponseHeader; n > base.MaxMessageSize {
			// As gRPC refuses a message over its limit: this execution fails, not the
			// connection the session's other executions share.
			return status.Errorf(codes.ResourceExhausted, "event of %d bytes exceeds the message size limit of %d", n, base.MaxMessageSize)
		}
		return w.WriteWait(ctx, fastpath.FinishFrame(b), fastPendingLimit)
	})
}

// fastClient is the host's side of the fast path: one connection, which the executions of
// the session share.
type fastClient struct {
	conn *net.UnixConn
	w    *fastpath.FrameWriter
	ids  atomic.Uint32

	mu      sync.Mutex
	pending map[uint32]*fastCall
	err     error         // set once the connection broke
	dead    chan struct{} // closed then
}

// fastCall is an execution waiting for its frames.
type fastCall struct {
	frames chan fastFrame
	done   chan struct{} // closed when the caller stopped listening
}

// fastFrame is an answer frame: a gRPC code and the event or the error text.
type fastFrame struct {
	code codes.Code
	msg  []byte
}

// fastSetupTimeout bounds asking for and connecting to a plugin's fast path.
const fastSetupTimeout = 10 * time.Second

// dialFast asks the plugin for a fast path and connects to it. An error means the plugin
// offers none (an older plugin answers UNIMPLEMENTED) or it could not be set up.
func dialFast(ctx context.Context, rpc limitv1.RunnerClient) (*fastClient, error) {
	ctx, cancel := context.WithTimeout(ctx, fastSetupTimeout)
	defer cancel()
	r, err := rpc.OpenFastPath(ctx, &limitv1.OpenFastPathRequest{Version: fastVersion, Connections: 1})
	if err != nil {
		return nil, err
	}
	if err := fastpath.CheckOffer(r, fastVersion); err != nil {
		return nil, err
	}
	uc, err := fastpath.Dial(ctx, r.GetAddress(), r.GetToken())
	if err != nil {
		return nil, err
	}
	c := &fastClient{conn: uc, w: fastpath.NewFrameWriter(uc), pending: map[uint32]*fastCall{}, dead: make(chan struct{})}
	go c.read()
	return c, nil
}

// alive tells whether the connection still works.
func (c *fastClient) alive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil
}

// execute runs m in the plugin, forwarding its events to emit; see Client.Execute.
func (c *fastClient) execute(ctx context.Context, m *limitv1.ExecuteRequest, emit func(Event) error) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("runner execute: %w", base.PlainStatus(status.FromContextError(err).Err()))
	}
	call := &fastCall{frames: make(chan fastFrame, fastQueue), done: make(chan struct{})}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return Result{}, fmt.Errorf("runner execute: %w", base.PlainStatus(lostStatus(err)))
	}
	id := c.ids.Add(1)
	c.pending[id] = call
	c.mu.Unlock()
	finished := false
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		close(call.done)
		if !finished {
			// The caller stopped listening before the end: stop the execution too.
			_ = c.w.Write(fastpath.FinishFrame(fastpath.AppendRequestHeader(nil, id, fastCancel, 0)))
		}
	}()
	var deadline int64
	if d, ok := ctx.Deadline(); ok {
		deadline = d.UnixNano()
	}
	b := fastpath.AppendRequestHeader(make([]byte, 0, 4+fastpath.RequestHeader+proto.Size(m)), id, fastExecute, deadline)
	b, err := proto.MarshalOptions{}.MarshalAppend(b, m)
	if err != nil {
		finished = true
		return Result{}, status.Errorf(codes.Internal, "encode request: %v", err)
	}
	if n := len(b) - 4 - fastpath.RequestHeader; n > base.MaxMessageSize {
		finished = true
		return Result{}, fmt.Errorf("runner execute: %w", base.PlainStatus(status.Errorf(codes.ResourceExhausted, "request of %d bytes exceeds the message size limit of %d", n, base.MaxMessageSize)))
	}
	if err := c.w.Write(fastpath.FinishFrame(b)); err != nil {
		c.fail(err)
		finished = true
		return Result{}, fmt.Errorf("runner execute: %w", base.PlainStatus(lostStatus(err)))
	}
	for {
		var fr fastFrame
		select {
		case fr = <-call.frames:
		case <-ctx.Done():
			return Result{}, fmt.Errorf("runner execute: %w", base.PlainStatus(status.FromContextError(ctx.Err()).Err()))
		case <-c.dead:
			// Frames that arrived before the connection broke still count.
			select {
			case fr = <-call.frames:
			default:
				finished = true
				c.mu.Lock()
				err := c.err
				c.mu.Unlock()
				return Result{}, fmt.Errorf("runner execute: %w", base.PlainStatus(lostStatus(err)))
			}
		}
		if fr.code != codes.OK {
			finished = true
			return Result{}, fmt.Errorf("runner execute: %w", base.PlainStatus(status.Error(fr.code, string(fr.msg))))
		}
		ev := new(limitv1.ExecuteEvent)
		if err := proto.Unmarshal(fr.msg, ev); err != nil {
			return Result{}, status.Errorf(codes.Internal, "decode event: %v", err)
		}
		res, done, err := deliver(ev, emit)
		if done || err != nil {
			finished = done
			return res, err
		}
	}
}

// read delivers answer frames to their executions until the connection breaks.
func (c *fastClient) read() {
	r := bufio.NewReaderSize(c.conn, 64<<10)
	for {
		buf, err := fastpath.ReadFrame(r, fastpath.ResponseHeader, fastpath.MaxFrame)
		if err != nil {
			c.fail(err)
			return
		}
		id := binary.LittleEndian.Uint32(buf)
		c.mu.Lock()
		call := c.pending[id]
		c.mu.Unlock()
		if call == nil {
			continue // an execution whose caller went away
		}
		select {
		case call.frames <- fastFrame{code: codes.Code(buf[4]), msg: buf[fastpath.ResponseHeader:]}:
		case <-call.done:
		}
	}
}

// fail marks the connection broken and closes it; the executions waiting on it end as
// unavailable: the plugin may have died, and what became of them is unknown.
func (c *fastClient) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	close(c.dead)
	_ = c.conn.Close()
}

// close closes the connection.
func (c *fastClient) close() { c.fail(errors.New("client closed")) }

// lostStatus is the error of an execution whose connection broke.
func lostStatus(err error) error {
	return status.Errorf(codes.Unavailable, "runner plugin connection lost: %v", err)
}
