package peercred

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// accepted connects to a listener on addr from the command (or from this process when
// cmd is nil) and returns the accepted connection.
func accepted(t *testing.T, network, addr string, cmd func(port int) *exec.Cmd) net.Conn {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if cmd == nil {
		c, err := net.Dial(network, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	} else {
		c := cmd(port)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	}
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ends(c net.Conn) (local, remote netip.AddrPort) {
	return c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort()
}

func TestPeerOfThisProcess(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}, {"tcp", "[::]:0"}} {
		t.Run(tc.addr, func(t *testing.T) {
			c := accepted(t, tc.network, tc.addr, nil)
			local, remote := ends(c)
			uid, ok, err := TCPPeerUID(local, remote)
			if err != nil || !ok || uid != os.Getuid() {
				t.Fatalf("peer of %v → %v: uid %d found %v (%v), want %d", remote, local, uid, ok, err, os.Getuid())
			}
		})
	}
}

func TestPeerOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another uid")
	}
	// /usr/bin/python3 first: a python3 on PATH may be a shim in root's home, which
	// nobody cannot run.
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no /usr/bin/python3 for the client")
	}
	const nobody = 65534
	c := accepted(t, "tcp4", "127.0.0.1:0", func(port int) *exec.Cmd {
		cmd := exec.Command(py, "-c", "import socket, time\ns = socket.create_connection(('127.0.0.1', "+strconv.Itoa(port)+"))\ntime.sleep(30)")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		return cmd
	})
	local, remote := ends(c)
	uid, ok, err := TCPPeerUID(local, remote)
	if err != nil || !ok || uid != nobody {
		t.Fatalf("uid %d found %v (%v), want %d", uid, ok, err, nobody)
	}
}

func TestNoLocalPeer(t *testing.T) {
	c := accepted(t, "tcp4", "127.0.0.1:0", nil)
	local, _ := ends(c)
	// A remote end no local socket has: as for a client on another machine.
	uid, ok, err := TCPPeerUID(local, netip.MustParseAddrPort("192.0.2.7:40000"))
	if err != nil || ok {
		t.Fatalf("found uid %d (%v) for a peer that is not here", uid, err)
	}
}

func TestParseAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000000000000000000001000000:0050": "[::1]:80",
		"0000000000000000FFFF00000100007F:1F90": "127.0.0.1:8080",
	} {
		got, err := parseAddr([]byte(in))
		if err != nil || got.String() != want {
			t.Errorf("%s → %v (%v), want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0100007F", "01007F:1F90", "zz00007F:1F90", "0100007F:1FFFFF"} {
		if _, err := parseAddr([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
