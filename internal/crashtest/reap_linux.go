package crashtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// becomeSubreaper makes this process adopt orphaned descendants: a plugin whose writer was
// killed becomes this process's child, so waitGone can reap it instead of leaving a
// zombie (PID 1 of a container may never reap).
func becomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become a child subreaper: %w", err)
	}
	return nil
}

// waitGone waits until process pid has exited, reaping it if it became this process's
// child.
func waitGone(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	self := os.Getpid()
	for {
		state, ppid, err := procState(pid)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err == nil && state == 'Z' && ppid == self {
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); err != nil && !errors.Is(err, syscall.ECHILD) {
				return fmt.Errorf("reap %d: %w", pid, err)
			}
			continue
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d still exists %v after the kill (state %c)", pid, timeout, state)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// procState returns the state letter and parent pid of pid from /proc.
func procState(pid int) (byte, int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+4 >= len(b) {
		return 0, 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	ppid, _ := strconv.Atoi(string(f[1]))
	return f[0][0], ppid, nil
}
