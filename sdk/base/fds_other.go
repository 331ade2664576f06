//go:build !linux

package base

// CloseOnExecFrom does nothing where it is not implemented.
func CloseOnExecFrom(fd int) error { return nil }
