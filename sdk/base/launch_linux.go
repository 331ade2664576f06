package base

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// setProcAttr puts the plugin in its own process group, so the host can stop it with all
// its children, and asks the kernel to kill it if the host dies.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// KillGroup sends SIGKILL to the process group led by pid (a plugin and its children).
func KillGroup(pid int) error {
	if pid <= 0 {
		return nil
	}
	return syscall.Kill(-pid, syscall.SIGKILL)
}

// proc is a process seen under /proc: its pid and start time (in clock ticks since boot),
// which tells it from a later process given the same pid.
type proc struct {
	pid   int
	start uint64
}

// descendants returns the processes below pid (its children, theirs, …) as /proc shows
// them now, parents first. A child that left the plugin's process group (setsid) is among
// them while its parent lives: once the parent is gone it is no longer found under it, so
// the tree is taken before the plugin is stopped (see Stop).
func descendants(pid int) []proc {
	if pid <= 0 {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]proc{}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, start, ok := procStat(n); ok {
			children[ppid] = append(children[ppid], proc{n, start})
		}
	}
	var out []proc
	for next := []int{pid}; len(next) > 0; {
		p := next[0]
		next = next[1:]
		for _, c := range children[p] {
			out = append(out, c)
			next = append(next, c.pid)
		}
	}
	return out
}

// procStat reads a process's parent and start time from /proc/PID/stat.
func procStat(pid int) (ppid int, start uint64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command's name, in parentheses, may hold spaces and parentheses itself: the
	// fields are counted after its last ')'. Field 4 is the parent, 22 the start time.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, 0, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	return ppid, start, err1 == nil && err2 == nil
}

// killProcs sends SIGKILL to each of ps that still runs (the same pid, started at the
// same time).
func killProcs(ps []proc) {
	for _, p := range ps {
		if _, start, ok := procStat(p.pid); ok && start == p.start {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
}
