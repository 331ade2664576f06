package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUnneededMounts: of the host's mounts, those a block device backs that are neither on
// the path to nor inside a kept path are detached in the sandbox, deepest first; pseudo
// filesystems and / stay.
func TestUnneededMounts(t *testing.T) {
	info := `21 26 0:20 / /proc rw,relatime - proc proc rw
26 1 254:0 / / rw,relatime - ext4 /dev/vda rw
44 26 7:1 / /mnt/pin rw,relatime - ext4 /dev/loop1 rw
45 44 7:2 / /mnt/pin/deeper rw,relatime - ext4 /dev/loop2 rw
46 26 254:1 / /srv/data rw,relatime - ext4 /dev/vdb rw
47 26 254:2 / /opt/tools rw,relatime - ext4 /dev/vdc rw
48 26 7:3 / /space\040here rw,relatime - ext4 /dev/loop3 rw
49 26 0:40 / /tmp/scratch rw,relatime - tmpfs tmpfs rw
`
	mounts, err := parseMountinfo(strings.NewReader(info))
	if err != nil {
		t.Fatal(err)
	}
	got := unneededMounts(mounts, []string{"/srv/data/limit/sessions/x/work", "/usr", "/opt"})
	want := []string{"/mnt/pin/deeper", "/mnt/pin", "/space here"}
	if !slices.Equal(got, want) {
		t.Errorf("unneeded %q, want %q", got, want)
	}
}

// TestHostDisksNotPinned: a disk mounted on the host before a session starts is not held
// by the session's sandbox (its mount namespace, a copy of the host's, used to keep every
// mount alive), so the operator's umount of it frees it while the session runs.
func TestHostDisksNotPinned(t *testing.T) {
	needDisk(t)
	mkfs, _ := findMkfs()
	dir := t.TempDir()
	img, point := filepath.Join(dir, "pin.img"), filepath.Join(dir, "pin")
	if err := os.Mkdir(point, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := formatImage(mkfs, img, 8<<20, "", -1, -1); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, point).CombinedOutput(); err != nil {
		t.Skipf("mount a loop image: %v %s", err, out)
	}
	t.Cleanup(func() { _ = unix.Unmount(point, unix.MNT_DETACH) })
	var st syscall.Stat_t
	if err := syscall.Stat(point, &st); err != nil {
		t.Fatal(err)
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))

	s := open(t, nil, nil)
	if e := s.mustRun("print(1)"); e.stdout != "1\n" {
		t.Fatalf("execution: %+v", e)
	}
	var procs []int
	for next := []int{s.pid()}; len(next) > 0; {
		p := next[0]
		next = append(next[1:], children(p)...)
		procs = append(procs, p)
	}
	if len(procs) < 3 {
		t.Fatalf("plugin %d has processes %v, want its sandbox's init and worker too", s.pid(), procs)
	}
	for _, p := range procs[1:] {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", p))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 4 && f[2] == dev {
				t.Errorf("sandbox process %d holds the host's disk %s mounted at %s: %s", p, dev, point, line)
			}
		}
	}
}
