package base

import (
	"fmt"
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CloseOnExecFrom marks every open file descriptor numbered fd or above close-on-exec, so
// that none the process inherited (from a shell, a service manager, a test harness)
// reaches the programs it starts unless it passes them on purpose. limitd calls it when
// it starts; a sandbox calls it before it starts untrusted code.
func CloseOnExecFrom(fd int) error {
	err := unix.CloseRange(uint(fd), math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	// Kernels before 5.11: each open descriptor in turn.
	ents, rerr := os.ReadDir("/proc/self/fd")
	if rerr != nil {
		return fmt.Errorf("close_range: %v; list /proc/self/fd: %w", err, rerr)
	}
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n >= fd {
			unix.CloseOnExec(n)
		}
	}
	return nil
}
