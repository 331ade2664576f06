package fastpath

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
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
	c := &unaryConn{client: &UnaryClient{opts: UnaryOptions{What: "storage plugin"}}, conn: a, pending: map[uint32]chan unaryResult{}}
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
