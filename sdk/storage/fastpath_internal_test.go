package storage

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
	"github.com/limitgraph/limit/sdk/internal/fastpath"
)

// holdStore is a backend whose Get of "hold" waits for release and whose Get of "block"
// waits for its context to end, reporting each arrival on arrived.
type holdStore struct {
	Storage
	arrived chan string
	release chan struct{}
}

func (s *holdStore) Get(ctx context.Context, _ string, key []byte) ([]byte, bool, error) {
	s.arrived <- string(key)
	switch string(key) {
	case "hold":
		<-s.release
		return nil, false, nil
	case "block":
		<-ctx.Done()
		return nil, false, ctx.Err()
	}
	return nil, false, nil
}

// rawFastConn is one connection to a fast-path socket, spoken to frame by frame.
type rawFastConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRawFast(t *testing.T, r *limitv1.OpenFastPathResponse) *rawFastConn {
	t.Helper()
	c, err := net.Dial("unix", r.GetAddress())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Write(r.GetToken()); err != nil {
		t.Fatal(err)
	}
	var ack [1]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		t.Fatal(err)
	}
	return &rawFastConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawFastConn) send(id uint32, op byte, msg proto.Message) {
	rc.t.Helper()
	b := fastpath.AppendRequestHeader(nil, id, op, 0)
	if msg != nil {
		var err error
		b, err = proto.MarshalOptions{}.MarshalAppend(b, msg)
		if err != nil {
			rc.t.Fatal(err)
		}
	}
	if _, err := rc.c.Write(fastpath.FinishFrame(b)); err != nil {
		rc.t.Fatal(err)
	}
}

// answer reads the next answer frame; a generous deadline turns a hang into a failure.
func (rc *rawFastConn) answer() (id uint32, code codes.Code) {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf, err := fastpath.ReadFrame(rc.r, fastpath.ResponseHeader, fastpath.MaxFrame)
	if err != nil {
		rc.t.Fatalf("no answer: %v", err)
	}
	return binary.LittleEndian.Uint32(buf), codes.Code(buf[4])
}

// TestFastPathCancelBeforeInlineRequest checks that the cancellation of an inline read,
// which the host sends on another connection, is not lost when it reaches the plugin
// before the read itself: the reader of the read's connection may still be busy (here
// with an earlier inline read; in the host, finishing the answer of one) when the host
// sends the read, gives up on it and sends the cancellation. The read must still be
// cancelled, not served with a context that never ends while it holds its connection's
// reader, behind which the host's next reads on that connection wait.
func TestFastPathCancelBeforeInlineRequest(t *testing.T) {
	impl := &holdStore{arrived: make(chan string, 4), release: make(chan struct{})}
	srv := newServer(impl)
	var servers fastpath.Servers
	srv.fast = &fastServer{Server: servers.New(), srv: srv}
	defer servers.Shutdown()
	r, err := srv.fast.open(&limitv1.OpenFastPathRequest{Version: fastVersion, Connections: 2})
	if err != nil {
		t.Fatal(err)
	}
	c1, c2 := dialRawFast(t, r), dialRawFast(t, r)

	c1.send(1, fastGet|fastInline, &limitv1.GetRequest{Namespace: "ns", Key: []byte("hold")})
	if got := <-impl.arrived; got != "hold" {
		t.Fatalf("%q arrived, want hold", got)
	}
	// c1's reader is busy serving "hold": the next read waits unread behind it, and its
	// cancellation, on c2, is acted on first (the ping's answer on c2 follows it).
	c1.send(2, fastGet|fastInline, &limitv1.GetRequest{Namespace: "ns", Key: []byte("block")})
	c2.send(2, fastCancel, nil)
	c2.send(3, fastPing, &limitv1.PutRequest{})
	if id, code := c2.answer(); id != 3 || code != codes.OK {
		t.Fatalf("answer %d %v, want the ping's (3, OK)", id, code)
	}
	close(impl.release)
	if id, code := c1.answer(); id != 1 || code != codes.OK {
		t.Fatalf("answer %d %v, want the held read's (1, OK)", id, code)
	}
	if id, code := c1.answer(); id != 2 || code != codes.Canceled {
		t.Fatalf("answer %d %v, want the cancelled read's (2, CANCELED)", id, code)
	}
}
