package base

import (
	"os/exec"
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
