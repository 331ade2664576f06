package sdnotify

import (
	"net"
	"path/filepath"
	"testing"
)

// TestNotify: the state reaches the unixgram socket $NOTIFY_SOCKET names; without the
// variable nothing is sent and there is no error.
func TestNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	for _, state := range []string{Ready, Stopping} {
		sent, err := Notify(state)
		if !sent || err != nil {
			t.Fatalf("Notify(%q) = %v, %v", state, sent, err)
		}
		buf := make([]byte, 64)
		n, err := sock.Read(buf)
		if err != nil || string(buf[:n]) != state {
			t.Fatalf("received %q, %v; want %q", buf[:n], err, state)
		}
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if sent, err := Notify(Ready); sent || err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v, %v", sent, err)
	}
}

// TestNotifyAbstract: a name beginning with '@' is an abstract socket.
func TestNotifyAbstract(t *testing.T) {
	name := "@limit-sdnotify-test-" + filepath.Base(t.TempDir())
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Skipf("no abstract sockets here: %v", err)
	}
	defer sock.Close()
	t.Setenv("NOTIFY_SOCKET", name)
	if sent, err := Notify(Ready); !sent || err != nil {
		t.Fatalf("Notify = %v, %v", sent, err)
	}
	buf := make([]byte, 64)
	if n, err := sock.Read(buf); err != nil || string(buf[:n]) != Ready {
		t.Fatalf("received %q, %v", buf[:n], err)
	}
}
