package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mountEntry is a line of /proc/self/mountinfo: the mount point and whether a block device
// backs the filesystem (a major device number other than 0: a disk, a partition, a loop
// device; not proc, sysfs, tmpfs, cgroup or overlay).
type mountEntry struct {
	point  string
	backed bool
}

// parseMountinfo reads the mount points of a mountinfo file (proc(5)), octal escapes
// (\040 for a space) undone.
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		major, _, ok := strings.Cut(f[2], ":")
		if !ok {
			continue
		}
		out = append(out, mountEntry{point: unescapeMountinfo(f[4]), backed: major != "0"})
	}
	return out, sc.Err()
}

// unescapeMountinfo undoes mountinfo's octal escapes of space, tab, newline and backslash.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unneededMounts returns the mount points of mounts that a block device backs and that
// are neither on the path to nor inside any of keep: what the sandboxed code can neither
// reach (Landlock allows it only keep) nor needs to cross to reach keep. Deepest first.
func unneededMounts(mounts []mountEntry, keep []string) []string {
	var out []string
	for _, m := range mounts {
		if !m.backed || m.point == "/" || slices.Contains(out, m.point) {
			continue
		}
		needed := false
		for _, k := range keep {
			if under(k, m.point) || under(m.point, k) {
				needed = true
				break
			}
		}
		if !needed {
			out = append(out, m.point)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return out
}

// detachUnneeded detaches, in the sandbox's own mount namespace (made private first), the
// host's disk-backed mounts the code has no use for (unneededMounts), so that the sandbox
// does not hold them: an operator's umount of such a disk on the host frees it (its loop
// device can be detached, the disk checked) while sessions run. It returns how many it
// detached; one that cannot be is left as it is.
func detachUnneeded(keep []string) (int, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return 0, err
	}
	mounts, err := parseMountinfo(f)
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	// A path kept through a symlink keeps the mount its target is on too.
	for _, k := range slices.Clone(keep) {
		if real, err := filepath.EvalSymlinks(k); err == nil && real != k {
			keep = append(keep, real)
		}
	}
	n := 0
	for _, p := range unneededMounts(mounts, keep) {
		if unix.Unmount(p, unix.MNT_DETACH) == nil {
			n++
		}
	}
	return n, nil
}
