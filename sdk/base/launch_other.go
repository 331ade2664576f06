//go:build !linux

package base

import "os/exec"

func setProcAttr(cmd *exec.Cmd) {}

// KillGroup is a no-op where process groups are not supported.
func KillGroup(pid int) error { return nil }

// proc is a process below a plugin (Linux only).
type proc struct{}

// descendants finds nothing where /proc is not read.
func descendants(int) []proc { return nil }

// killProcs is a no-op where descendants finds nothing.
func killProcs([]proc) {}
