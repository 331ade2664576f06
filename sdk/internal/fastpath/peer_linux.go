package fastpath

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
)

// PeerCheckSupported tells whether CheckPeer can work here.
func PeerCheckSupported() error { return nil }

// CheckPeer checks the kernel's record of the process at the other end of c: it must run
// as this process's user, and when child is set it must be a child of this process (the
// host checks that the socket a plugin named belongs to the plugin it started).
func CheckPeer(c *net.UnixConn, child bool) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("peer credentials: %w", cerr)
	}
	if int(cred.Uid) != os.Getuid() {
		return fmt.Errorf("peer runs as uid %d, not %d", cred.Uid, os.Getuid())
	}
	if !child {
		return nil
	}
	ppid, err := parentOf(int(cred.Pid))
	if err != nil {
		return err
	}
	if ppid != os.Getpid() {
		return fmt.Errorf("peer process %d is not a child of this process", cred.Pid)
	}
	return nil
}

// parentOf reads the parent pid of pid from /proc.
func parentOf(pid int) (int, error) {
	if pid <= 0 {
		return 0, fmt.Errorf("peer process is not visible")
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid ...; comm may contain spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return strconv.Atoi(string(f[1]))
}
