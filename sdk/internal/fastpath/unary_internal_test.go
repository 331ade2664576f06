package fastpath

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestWaitingCallsAreLostNotUnsent: when a call's own request fails to go out whole, the
// connection breaks for the calls waiting on it too. Their requests went out, so what
// became of them is unknown: their error is UNAVAILABLE without the "request not sent"
// mark, which would let a caller make a compare-and-swap again (the crash audit took such
// an error for a call the host should have retried).
func TestWaitingCallsAreLostNotUnsent(t *testing.T) {
	a, b, err := unixPair()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c := newUnaryConn(&UnaryClient{opts: UnaryOptions{What: "storage plugin"}}, a)
	waiting := make(chan unaryResult, 1)
	c.pending[1] = waiting
	own := fmt.Errorf("%w: %w", ErrNotSent, fmt.Errorf("write unix: %w", syscall.EPIPE))
	c.fail(own)
	r := <-waiting
	if r.code != codes.Unavailable || strings.Contains(string(r.msg), ErrNotSent.Error()) {
		t.Fatalf("the waiting call got %v %q: want UNAVAILABLE without %q", r.code, r.msg, ErrNotSent)
	}
	if !strings.Contains(string(r.msg), "broken pipe") {
		t.Errorf("the waiting call's error %q does not say what broke the connection", r.msg)
	}
	// The call whose request was not sent still says so.
	if err := c.notSent(own); !errors.Is(err, ErrNotSent) {
		t.Errorf("notSent: %v", err)
	}
	if got := sentCause(fmt.Errorf("%w: %w", ErrNotSent, fmt.Errorf("%w: %w", ErrNotSent, syscall.EPIPE))); got != syscall.EPIPE {
		t.Errorf("sentCause of a doubly marked error: %v", got)
	}
}

// unixPair returns two connected Unix stream sockets.
func unixPair() (*net.UnixConn, *net.UnixConn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, nil, err
	}
	var conns [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socket")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, nil, err
		}
		conns[i] = c.(*net.UnixConn)
	}
	return conns[0], conns[1], nil
}

// TestReadingTurnPassesOn: answers are read by the calls waiting for them. A call reading
// when its context ends stops at once, even in the middle of another call's answer, and
// the call still waiting takes over the reading and gets that answer whole; the plugin is
// told of the cancellation. Answers that fit the read buffer and answers larger than it
// are taken differently, so both are cut.
func TestReadingTurnPassesOn(t *testing.T) {
	for _, size := range []int{700, 200 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) { testReadingTurnPassesOn(t, size) })
	}
}

func testReadingTurnPassesOn(t *testing.T, size int) {
	a, b, err := unixPair()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	client := &UnaryClient{opts: UnaryOptions{What: "storage plugin", CancelOp: 9}}
	conn := newUnaryConn(client, a)
	client.conns = []*unaryConn{conn}
	defer client.Close()
	plugin := bufio.NewReader(b)
	request := func() (uint32, byte) {
		t.Helper()
		buf, err := ReadFrame(plugin, RequestHeader, MaxFrame)
		if err != nil {
			t.Fatal(err)
		}
		return binary.LittleEndian.Uint32(buf), buf[4]
	}

	// The first call reads, as nothing else waits; its answer never comes.
	ctxA, cancelA := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() { errA <- client.Call(ctxA, 1, wrapperspb.Bytes([]byte("a")), new(wrapperspb.BytesValue)) }()
	idA, _ := request()
	for conn.rd.TryLock() { // until the first call holds the reading turn
		conn.rd.Unlock()
		time.Sleep(time.Millisecond)
	}
	type answer struct {
		v   []byte
		err error
	}
	ansB := make(chan answer, 1)
	go func() {
		out := new(wrapperspb.BytesValue)
		err := client.Call(context.Background(), 1, wrapperspb.Bytes([]byte("b")), out)
		ansB <- answer{out.GetValue(), err}
	}()
	idB, _ := request()
	// Half of the second call's answer, which the first call reads into its buffer.
	want := bytes.Repeat([]byte("answer "), size/7)
	msg, err := proto.Marshal(wrapperspb.Bytes(want))
	if err != nil {
		t.Fatal(err)
	}
	frame := FinishFrame(append(AppendResponseHeader(nil, idB, 0), msg...))
	half := len(frame) / 2
	if _, err := b.Write(frame[:half]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	cancelA()
	if err := <-errA; status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled call: %v, want CANCELED", err)
	}
	if id, op := request(); id != idA || op != 9 {
		t.Fatalf("after the cancellation the plugin got request %d op %d, want the cancel op for %d", id, op, idA)
	}
	select {
	case r := <-ansB:
		t.Fatalf("the second call ended before its answer was sent whole: %q, %v", r.v, r.err)
	case <-time.After(20 * time.Millisecond):
	}
	if _, err := b.Write(frame[half:]); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ansB:
		if r.err != nil || !bytes.Equal(r.v, want) {
			t.Fatalf("second call got %d bytes, %v; want its answer whole", len(r.v), r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second call never got its answer: nobody took over the reading")
	}
	// The connection is still in working order for the next call.
	go func() {
		id, _ := request()
		m, _ := proto.Marshal(wrapperspb.Bytes([]byte("c")))
		_, _ = b.Write(FinishFrame(append(AppendResponseHeader(nil, id, 0), m...)))
	}()
	out := new(wrapperspb.BytesValue)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Call(ctx, 1, wrapperspb.Bytes([]byte("c")), out); err != nil || string(out.GetValue()) != "c" {
		t.Fatalf("next call: %q, %v", out.GetValue(), err)
	}
}

// fakePlugin is the plugin's end of a client's connections: it reports each request frame
// it reads (connection, id, op) and answers a request when told to.
type fakePlugin struct {
	ends []*net.UnixConn
	mu   []sync.Mutex // per connection, held while writing an answer
	seen chan seenRequest
}

type seenRequest struct {
	conn int
	id   uint32
	op   byte
}

// newFakePlugin returns a UnaryClient over n connections to a fake plugin.
func newFakePlugin(t *testing.T, n int) (*UnaryClient, *fakePlugin) {
	t.Helper()
	client := &UnaryClient{opts: UnaryOptions{What: "storage plugin", CancelOp: 9}}
	p := &fakePlugin{seen: make(chan seenRequest, 1024), mu: make([]sync.Mutex, n)}
	for i := range n {
		a, b, err := unixPair()
		if err != nil {
			t.Fatal(err)
		}
		client.conns = append(client.conns, newUnaryConn(client, a))
		p.ends = append(p.ends, b)
		go readRequests(b, i, p.seen)
	}
	t.Cleanup(func() {
		client.Close()
		for _, b := range p.ends {
			b.Close()
		}
	})
	return client, p
}

// readRequests reports each request frame read from the plugin's end b of connection
// conn to seen, until b fails.
func readRequests(b *net.UnixConn, conn int, seen chan<- seenRequest) {
	r := bufio.NewReader(b)
	for {
		buf, err := ReadFrame(r, RequestHeader, MaxFrame)
		if err != nil {
			return
		}
		seen <- seenRequest{conn, binary.LittleEndian.Uint32(buf), buf[4]}
	}
}

func (p *fakePlugin) next(t *testing.T) seenRequest {
	t.Helper()
	select {
	case s := <-p.seen:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the plugin")
		return seenRequest{}
	}
}

// write sends frame on connection conn, whole or in two pieces a little apart; frames on
// one connection never interleave.
func (p *fakePlugin) write(conn int, frame []byte, pieces bool) {
	p.mu[conn].Lock()
	defer p.mu[conn].Unlock()
	if pieces {
		half := len(frame) / 2
		_, _ = p.ends[conn].Write(frame[:half])
		time.Sleep(200 * time.Microsecond)
		frame = frame[half:]
	}
	_, _ = p.ends[conn].Write(frame)
}

func (p *fakePlugin) answer(t *testing.T, s seenRequest) {
	t.Helper()
	p.write(s.conn, FinishFrame(AppendResponseHeader(nil, s.id, 0)), false)
}

// TestInlineWritesLeaveAConnectionFree: a write is sent for the plugin to serve inline
// only while another connection stays unclaimed, so the calls made during its disk sync
// never queue behind it; once every connection is claimed, a call goes behind an inline
// read (quick) rather than an inline write.
func TestInlineWritesLeaveAConnectionFree(t *testing.T) {
	client, plugin := newFakePlugin(t, 3)
	ctx := context.Background()
	done := make(chan error, 8)
	call := func(write bool) seenRequest {
		t.Helper()
		f := client.CallRead
		if write {
			f = client.CallLong
		}
		go func() { done <- f(ctx, 1, wrapperspb.Bytes(nil), new(wrapperspb.BytesValue)) }()
		return plugin.next(t)
	}
	w1, w2 := call(true), call(true)
	if w1.op&Inline == 0 || w2.op&Inline == 0 || w1.conn == w2.conn {
		t.Fatalf("two writes with three connections: %+v %+v, want both inline on their own", w1, w2)
	}
	w3 := call(true)
	if w3.op&Inline != 0 || w3.conn == w1.conn || w3.conn == w2.conn {
		t.Fatalf("third write %+v: want it sent plainly on the connection left free", w3)
	}
	plugin.answer(t, w3)
	plugin.answer(t, w2)
	if err, err2 := <-done, <-done; err != nil || err2 != nil {
		t.Fatal(err, err2)
	}
	// Now: w1 an inline write; claim the two others with inline reads.
	r1, r2 := call(false), call(false)
	if r1.op&Inline == 0 || r2.op&Inline == 0 || r1.conn == w1.conn || r2.conn == w1.conn || r1.conn == r2.conn {
		t.Fatalf("reads %+v %+v beside the write on %d: want both inline on the others", r1, r2, w1.conn)
	}
	for range 2 * len(client.conns) { // from every starting point of the rotation
		if c := client.pick(); c == client.conns[w1.conn] {
			t.Fatalf("with every connection claimed, pick chose the one serving an inline write")
		}
	}
	w4 := call(true)
	if w4.op&Inline != 0 || w4.conn == w1.conn {
		t.Fatalf("a write with every connection claimed went %+v: want it plain, behind a read, not behind the write on %d", w4, w1.conn)
	}
	for _, s := range []seenRequest{w1, r1, r2, w4} {
		plugin.answer(t, s)
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestInlineCallsKeepToOneConnection: calls made one after the other, reads and writes,
// all go inline on the same connection (the first), not each on the next in turn.
func TestInlineCallsKeepToOneConnection(t *testing.T) {
	client, plugin := newFakePlugin(t, 4)
	ctx := context.Background()
	for i := range 8 {
		f := client.CallRead
		if i%2 == 1 {
			f = client.CallLong
		}
		done := make(chan error, 1)
		go func() { done <- f(ctx, 1, wrapperspb.Bytes(nil), new(wrapperspb.BytesValue)) }()
		r := plugin.next(t)
		if r.op&Inline == 0 || r.conn != 0 {
			t.Fatalf("call %d went %+v: want inline on connection 0", i, r)
		}
		plugin.answer(t, r)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestReadingTurnUnderLoad: many calls on few connections, answered out of order and some
// in pieces, a third of them cancelled at random moments (some mid-read): every call that
// succeeds gets its own answer, every cancelled one says so, none hangs, and the
// connections still work afterwards.
func TestReadingTurnUnderLoad(t *testing.T) {
	client, plugin := newFakePlugin(t, 2)
	// The plugin echoes each request's payload (the id it was given) after a random delay,
	// sometimes writing the answer in two pieces; ids it was told to cancel are answered
	// anyway, as a plugin racing the cancellation would.
	var answering sync.WaitGroup
	stop := make(chan struct{})
	answering.Go(func() {
		for {
			var s seenRequest
			select {
			case s = <-plugin.seen:
			case <-stop:
				return
			}
			if s.op == 9 {
				continue // a cancellation
			}
			answering.Go(func() {
				time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
				msg, _ := proto.Marshal(wrapperspb.Bytes(bytes.Repeat(binary.LittleEndian.AppendUint32(nil, s.id), 1+rand.IntN(40000))))
				frame := FinishFrame(append(AppendResponseHeader(nil, s.id, 0), msg...))
				plugin.write(s.conn, frame, rand.IntN(3) == 0)
			})
		}
	})
	const calls = 400
	var wg sync.WaitGroup
	var ok, cancelled atomic.Int32
	for i := range calls {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if i%3 == 0 {
				time.AfterFunc(time.Duration(rand.IntN(1500))*time.Microsecond, cancel)
			}
			out := new(wrapperspb.BytesValue)
			f := client.Call
			switch i % 4 {
			case 1:
				f = client.CallRead
			case 2:
				f = client.CallLong
			}
			err := f(ctx, 1, wrapperspb.Bytes(nil), out)
			switch {
			case err == nil:
				v := out.GetValue()
				if len(v) < 4 || len(v)%4 != 0 {
					t.Errorf("call %d: answer of %d bytes", i, len(v))
					return
				}
				id := binary.LittleEndian.Uint32(v)
				for off := 0; off < len(v); off += 4 {
					if binary.LittleEndian.Uint32(v[off:]) != id {
						t.Errorf("call %d: answer mixes two answers", i)
						return
					}
				}
				ok.Add(1)
			case status.Code(err) == codes.Canceled:
				cancelled.Add(1)
			default:
				t.Errorf("call %d: %v", i, err)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("calls still waiting after 60 s: %d answered, %d cancelled of %d", ok.Load(), cancelled.Load(), calls)
	}
	if ok.Load()+cancelled.Load() != calls || ok.Load() == 0 || cancelled.Load() == 0 {
		t.Fatalf("%d answered, %d cancelled of %d", ok.Load(), cancelled.Load(), calls)
	}
	// The connections still work: calls one after the other each get their own answer,
	// past the answers to cancelled calls still waiting on the connection.
	for i := range 8 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out := new(wrapperspb.BytesValue)
		err := client.Call(ctx, 1, wrapperspb.Bytes(nil), out)
		cancel()
		if v := out.GetValue(); err != nil || len(v) < 4 {
			t.Fatalf("call %d after the load: %d bytes, %v", i, len(v), err)
		}
	}
	close(stop)
	// Answers to cancelled calls that no call is left to read may fill a connection's
	// socket and block their writer (a plugin's writer waits so until the host's next call
	// on it reads them): closing the plugin's ends releases them.
	for _, b := range plugin.ends {
		b.Close()
	}
	answering.Wait()
}

// TestCancelsTakeTheirOwnConnection: a cancellation goes on the connection kept for them,
// not behind what is queued on its call's connection (which a plugin busy with an inline
// call, or short of processor, reads late: cancellations of eight 10 MB prompts came 2 s
// late so). Here the plugin answers nothing and the cancellations of an inline call and of
// a plain one arrive on that connection; once it is broken they go as before.
func TestCancelsTakeTheirOwnConnection(t *testing.T) {
	client, plugin := newFakePlugin(t, 3)
	a, b, err := unixPair()
	if err != nil {
		t.Fatal(err)
	}
	client.ctl = newUnaryConn(client, a)
	ctl := make(chan seenRequest, 16)
	go readRequests(b, -1, ctl)
	call := func(f func(context.Context, byte, proto.Message, proto.Message) error) (seenRequest, context.CancelFunc, chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f(ctx, 1, wrapperspb.Bytes(nil), new(wrapperspb.BytesValue)) }()
		return plugin.next(t), cancel, done
	}
	for _, f := range []func(context.Context, byte, proto.Message, proto.Message) error{client.CallLong, client.Call} {
		req, cancel, done := call(f)
		cancel()
		if err := <-done; status.Code(err) != codes.Canceled {
			t.Fatalf("cancelled call: %v", err)
		}
		select {
		case c := <-ctl:
			if c.id != req.id || c.op != 9 {
				t.Fatalf("on the cancellations' connection: %+v, want the cancellation of %+v", c, req)
			}
		case s := <-plugin.seen:
			t.Fatalf("the cancellation of %+v went on a connection of calls: %+v", req, s)
		case <-time.After(10 * time.Second):
			t.Fatalf("the cancellation of %+v never came", req)
		}
	}
	// With that connection gone, a cancellation still reaches the plugin.
	b.Close()
	for client.ctl.w.Write(FinishFrame(AppendRequestHeader(nil, 0, 9, 0))) == nil {
		time.Sleep(time.Millisecond) // until the client finds it broken
	}
	req, cancel, done := call(client.Call)
	cancel()
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled call: %v", err)
	}
	if s := plugin.next(t); s.id != req.id || s.op != 9 || s.conn != req.conn {
		t.Fatalf("with the cancellations' connection broken: %+v, want the cancellation of %+v on its connection", s, req)
	}
}

// TestAbandonedInlineCallHoldsItsConnection: an inline call whose caller gives up before
// the plugin answers leaves the plugin's reader of that connection serving it (a rule
// asleep, ignoring its context). Later calls must go elsewhere, not queue behind it, until
// the plugin answers it; then the connection is used again. With every connection held
// so, calls come back ErrBroken (the caller goes to gRPC) instead of waiting.
func TestAbandonedInlineCallHoldsItsConnection(t *testing.T) {
	client, plugin := newFakePlugin(t, 2)
	// The plugin serves an inline request on the goroutine that reads its connection, so
	// here a connection whose inline request is unanswered answers nothing more.
	stuck := map[int]bool{}
	var mu sync.Mutex
	serve := func(s seenRequest) {
		mu.Lock()
		defer mu.Unlock()
		if stuck[s.conn] {
			return
		}
		if s.op&Inline != 0 && s.op&^Inline == 2 { // op 2: a call that hangs
			stuck[s.conn] = true
			return
		}
		plugin.answer(t, s)
	}
	hang := func(f func(context.Context, byte, proto.Message, proto.Message) error) seenRequest {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- f(ctx, 2, wrapperspb.Bytes(nil), new(wrapperspb.BytesValue)) }()
		s := plugin.next(t)
		serve(s)
		if err := <-done; status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("hung call: %v, want DEADLINE_EXCEEDED", err)
		}
		return s
	}
	ok := func(f func(context.Context, byte, proto.Message, proto.Message) error) seenRequest {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- f(ctx, 1, wrapperspb.Bytes(nil), new(wrapperspb.BytesValue)) }()
		s := plugin.next(t)
		serve(s)
		if err := <-done; err != nil {
			t.Fatalf("call after a hung one (%+v): %v", s, err)
		}
		return s
	}
	h := hang(client.CallRead)
	if h.op&Inline == 0 {
		t.Fatalf("hung call went %+v, want inline", h)
	}
	for i := range 4 {
		f := client.CallRead
		if i%2 == 1 {
			f = client.CallLong
		}
		if s := ok(f); s.conn == h.conn {
			t.Fatalf("call %d went on the connection of the hung call", i)
		}
		if s := ok(client.Call); s.conn == h.conn {
			t.Fatalf("plain call %d went on the connection of the hung call", i)
		}
	}
	// The plugin answers the hung call at last: its connection is used again.
	mu.Lock()
	delete(stuck, h.conn)
	mu.Unlock()
	plugin.answer(t, h)
	for client.conns[h.conn].inline.Load() != 0 {
		time.Sleep(time.Millisecond)
	}
	if s := ok(client.CallRead); s.conn != h.conn || s.op&Inline == 0 {
		t.Fatalf("call after the answer went %+v, want inline on connection %d again", s, h.conn)
	}
	// Both connections held by hung calls: ErrBroken, sent nowhere.
	h1 := hang(client.CallRead)
	h2 := hang(client.CallRead)
	if h1.conn == h2.conn {
		t.Fatalf("two hung calls on one connection: %+v %+v", h1, h2)
	}
	if err := client.Call(context.Background(), 1, wrapperspb.Bytes(nil), new(wrapperspb.BytesValue)); !errors.Is(err, ErrBroken) {
		t.Fatalf("every connection held: %v, want ErrBroken", err)
	}
	if client.Alive() {
		t.Fatal("every connection held, yet Alive")
	}
	// Closing the client ends the goroutines waiting for the hung answers.
	client.Close()
	for _, conn := range client.conns {
		for conn.inflight.Load() != 0 {
			time.Sleep(time.Millisecond)
		}
	}
}
