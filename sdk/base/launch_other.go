//go:build !linux

package base

import "os/exec"

func setProcAttr(cmd *exec.Cmd) {}

// KillGroup is a no-op where process groups are not supported.
func KillGroup(pid int) error { return nil }
