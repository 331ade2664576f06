package fastpath

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
)

func TestReadFrameBounds(t *testing.T) {
	frame := FinishFrame(append(AppendResponseHeader(nil, 7, 3), "hello"...))
	got, err := ReadFrame(bufio.NewReader(bytes.NewReader(frame)), ResponseHeader, 64)
	if err != nil || string(got[ResponseHeader:]) != "hello" || got[4] != 3 {
		t.Fatalf("ReadFrame: %q, %v", got, err)
	}
	for _, tc := range []struct {
		name        string
		least, most uint32
	}{{"too short", 20, 64}, {"too long", ResponseHeader, 5}} {
		if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(frame)), tc.least, tc.most); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(frame[:8])), ResponseHeader, 64); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut frame: %v, want unexpected EOF", err)
	}
}

// TestWriteWaitWaitsForTheReader checks that WriteWait holds a sender back while more than
// its limit waits behind a write the reader has not taken, and that every frame arrives
// once, in order.
func TestWriteWaitWaitsForTheReader(t *testing.T) {
	a, b := net.Pipe() // unbuffered: a write waits for the read
	defer a.Close()
	defer b.Close()
	w := NewFrameWriter(a)
	first, second, third := bytes.Repeat([]byte{1}, 100), bytes.Repeat([]byte{2}, 100), bytes.Repeat([]byte{3}, 100)
	go func() { _ = w.Write(first) }() // blocks in the pipe
	for {
		w.mu.Lock()
		busy := w.writing
		w.mu.Unlock()
		if busy {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := w.Write(second); err != nil { // queued behind the first
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() { sent <- w.WriteWait(context.Background(), third, 50) }()
	select {
	case err := <-sent:
		t.Fatalf("WriteWait returned (%v) while 100 bytes waited behind an unread write", err)
	case <-time.After(100 * time.Millisecond):
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.WriteWait(ctx, third, 50); !errors.Is(err, context.Canceled) {
		t.Fatalf("WriteWait with a cancelled context: %v", err)
	}
	got := make([]byte, 300)
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if want := append(append(append([]byte{}, first...), second...), third...); !bytes.Equal(got, want) {
		t.Fatal("frames arrived out of order or mixed")
	}
}

// TestFrameWriterKeepsFramesWhole has many goroutines send frames, some larger than the
// buffer the writer keeps between bursts, through a socket whose reader is slow, and checks
// that every frame arrives whole. A queue that outgrew the kept buffer once left the writer
// handing the same memory out as both the batch being written and the next queue, so frames
// appended meanwhile overwrote bytes still to be sent (seen as a "bad frame length" of
// output text in a runner's stream).
func TestFrameWriterKeepsFramesWhole(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	w := NewFrameWriter(a)
	const senders, frames = 4, 40
	done := make(chan error, senders)
	for s := range senders {
		go func() {
			for i := range frames {
				size := 100 + (i*7919+s*104729)%(3*maxSpare/senders)
				f := AppendResponseHeader(nil, uint32(s<<16|i), byte(s))
				f = append(f, bytes.Repeat([]byte{byte(s*frames + i)}, size)...)
				if err := w.WriteWait(context.Background(), FinishFrame(f), maxSpare); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	r := bufio.NewReaderSize(b, 4096)
	next := make([]int, senders)
	for range senders * frames {
		f, err := ReadFrame(r, ResponseHeader, 1<<30)
		if err != nil {
			t.Fatalf("after %v frames per sender: %v", next, err)
		}
		id := binary.LittleEndian.Uint32(f)
		s, i := int(id>>16), int(id&0xffff)
		if s >= senders || i != next[s] || int(f[4]) != s {
			t.Fatalf("frame id %#x (code %d) arrived; want sender %d's frame %d", id, f[4], s, next[s])
		}
		for _, c := range f[ResponseHeader:] {
			if c != byte(s*frames+i) {
				t.Fatalf("sender %d's frame %d has a foreign byte", s, i)
			}
		}
		next[s]++
	}
	for range senders {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpenVersions: a plugin speaking framing versions 1 to 2 offers the version asked for
// and refuses others with FAILED_PRECONDITION, which tells the host to ask for an older one.
func TestOpenVersions(t *testing.T) {
	s := newServer()
	defer s.Shutdown()
	for _, v := range []uint32{0, 3} {
		_, err := s.OpenVersions(&limitv1.OpenFastPathRequest{Version: v, Connections: 1}, 1, 2, "limit-test-", func(*net.UnixConn) {})
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("version %d: %v, want FAILED_PRECONDITION", v, err)
		}
	}
	if err := PeerCheckSupported(); err != nil {
		t.Skipf("no socket offered on this system: %v", err)
	}
	for _, v := range []uint32{1, 2} {
		r, err := s.OpenVersions(&limitv1.OpenFastPathRequest{Version: v, Connections: 1}, 1, 2, "limit-test-", func(*net.UnixConn) {})
		if err != nil || r.GetVersion() != v {
			t.Errorf("version %d: offered %d, %v", v, r.GetVersion(), err)
		}
	}
}

// TestOfferInSocketDir: the socket is offered in the directory the host gave go-plugin
// (PLUGIN_UNIX_SOCKET_DIR), which limitd sweeps at its start, and is gone from it once
// the connection asked for is accepted.
func TestOfferInSocketDir(t *testing.T) {
	if err := PeerCheckSupported(); err != nil {
		t.Skipf("no socket offered on this system: %v", err)
	}
	dir := t.TempDir()
	t.Setenv(plugin.EnvUnixSocketDir, dir)
	s := newServer()
	defer s.Shutdown()
	r, err := s.Open(&limitv1.OpenFastPathRequest{Version: 1, Connections: 1}, 1, "limit-test-", func(c *net.UnixConn) { c.Close() })
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(filepath.Dir(r.GetAddress())) != dir {
		t.Fatalf("socket %s is not in a directory of %s", r.GetAddress(), dir)
	}
	c, err := net.Dial("unix", r.GetAddress())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(r.GetToken()); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	// The socket and its directory are removed once the accept loop has returned.
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("%s still holds %s", dir, ents[0].Name())
		}
	}
}

// TestReadRequest reads the frames a host sends: a request (Inline stripped off its op,
// its deadline on its context, registered for cancellation), a cancellation of it (acted
// on, nothing to serve), and after Shutdown nothing more.
func TestReadRequest(t *testing.T) {
	const cancelOp = 9
	deadline := time.Now().Add(time.Hour).Truncate(time.Nanosecond)
	var in []byte
	in = append(in, FinishFrame(append(AppendRequestHeader(nil, 7, 3|Inline, deadline.UnixNano()), "msg"...))...)
	in = append(in, FinishFrame(AppendRequestHeader(nil, 7, cancelOp, 0))...)
	in = append(in, FinishFrame(AppendRequestHeader(nil, 8, 3, 0))...)
	in = append(in, 1, 2) // a frame cut short
	r := bufio.NewReader(bytes.NewReader(in))
	s, sess := newServer(), NewSession()

	req, ok := s.ReadRequest(r, sess, cancelOp)
	if !ok || req == nil {
		t.Fatalf("first frame: %v %v, want a request", req, ok)
	}
	if req.ID != 7 || req.Op != 3 || !req.Inline || string(req.Msg) != "msg" {
		t.Fatalf("request %d op %d inline %v msg %q, want 7, 3, true, \"msg\"", req.ID, req.Op, req.Inline, req.Msg)
	}
	if d, ok := req.Ctx.Deadline(); !ok || !d.Equal(deadline) {
		t.Fatalf("deadline %v %v, want %v", d, ok, deadline)
	}
	cancel, ok := s.ReadRequest(r, sess, cancelOp)
	if !ok || cancel != nil {
		t.Fatalf("cancellation: %v %v, want nil, true", cancel, ok)
	}
	if !errors.Is(req.Ctx.Err(), context.Canceled) {
		t.Fatalf("request's context after its cancellation: %v, want canceled", req.Ctx.Err())
	}
	req.Done()
	s.End()

	go s.Shutdown() // waits for nothing: every request begun has ended
	for !s.isClosed() {
		time.Sleep(time.Millisecond)
	}
	if req, ok := s.ReadRequest(r, sess, cancelOp); ok || req != nil {
		t.Fatalf("a request after Shutdown: %v %v, want nil, false", req, ok)
	}
	if req, ok := s.ReadRequest(r, sess, cancelOp); ok || req != nil {
		t.Fatalf("a frame cut short: %v %v, want nil, false", req, ok)
	}
}

// isClosed tells whether Shutdown has begun.
func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// opaqueCtx hides its cancelCtx from the context package, which then watches each child
// on a goroutine of its own until the child or the parent ends: a child never cancelled
// shows as a goroutine that stays.
type opaqueCtx struct{ context.Context }

func (opaqueCtx) Value(any) any { return nil }

// TestReadRequestReleasesContexts serves requests with and without a deadline and checks
// that, once each is Done, no context made for them is left under the server's: the
// goroutines the context package runs for them under an opaque parent all end.
func TestReadRequestReleasesContexts(t *testing.T) {
	s, sess := newServer(), NewSession()
	s.ctx = opaqueCtx{s.ctx}
	const n = 50
	var in []byte
	deadline := time.Now().Add(time.Hour).UnixNano()
	for i := range n {
		d := int64(0)
		if i%2 == 0 {
			d = deadline
		}
		in = append(in, FinishFrame(AppendRequestHeader(nil, uint32(i+1), 3, d))...)
	}
	r := bufio.NewReader(bytes.NewReader(in))
	before := runtime.NumGoroutine()
	for range n {
		req, ok := s.ReadRequest(r, sess, 9)
		if !ok || req == nil {
			t.Fatalf("ReadRequest: %v %v", req, ok)
		}
		req.Done()
		s.End()
	}
	for range 500 {
		if runtime.NumGoroutine() <= before {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d goroutines after %d requests were done, %d before: their contexts were not all released", runtime.NumGoroutine(), n, before)
}
