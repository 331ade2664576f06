package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

// needDisk skips a test on a machine where the disk limit cannot be enforced.
func needDisk(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the disk limit needs root")
	}
	if _, err := findMkfs(); err != nil {
		t.Skip(err)
	}
	if _, err := os.Stat(loopControl); err != nil {
		t.Skip(err)
	}
}

// sessionFileExists checks that the session whose work dir is wd has a file name at its
// top: in its disk image when it has one (read with debugfs), else in wd.
func sessionFileExists(wd, name string) error {
	img := diskImagePath(wd)
	if _, err := os.Stat(img); err != nil {
		_, err := os.Stat(filepath.Join(wd, name))
		return err
	}
	out, err := exec.Command("debugfs", "-R", "stat /"+name, img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Inode:") {
		return fmt.Errorf("%s not in the image %s: %v: %s", name, img, err, out)
	}
	return nil
}

// fillCode writes files of 4 MiB until the disk is full or 96 MiB are written, and
// prints which.
const fillCode = `import errno, os
n = 0
try:
    for i in range(24):
        with open('f%d' % i, 'wb') as f:
            for _ in range(4):
                f.write(b'x' * 2**20)
                n += 2**20
    print('wrote', n)
except OSError as e:
    print('ENOSPC' if e.errno == errno.ENOSPC else 'errno %d' % e.errno, n)`

// TestDiskLimit: the session's files together cannot outgrow max_disk_bytes, however
// many files the code writes (each is far below max_file_bytes); the host's disk holds
// no more than the image, the session works on once it deletes files (and the host gets
// their space back), and its files outlast a worker the timeout killed.
func TestDiskLimit(t *testing.T) {
	t.Parallel()
	needDisk(t)
	const limit = 32 << 20
	s := open(t, map[string]any{"max_disk_bytes": "32MiB", "interrupt_grace": "300ms"}, nil)
	_, m := s.health()
	if f := m[featDisk]; !f.Enforced || !strings.Contains(f.Detail, "ext4") {
		t.Fatalf("health: %+v", f)
	}

	e := s.mustRun(fillCode)
	if !strings.HasPrefix(e.stdout, "ENOSPC ") {
		t.Fatalf("writing 96 MiB under a 32 MiB limit: %s", e)
	}
	img := diskImagePath(s.sess.WorkDir)
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if used := fi.Sys().(*syscall.Stat_t).Blocks * 512; fi.Size() != limit || used > limit {
		t.Errorf("the image is %d bytes, %d of them on the host's disk; want at most %d", fi.Size(), used, limit)
	}
	if ents, _ := os.ReadDir(s.sess.WorkDir); len(ents) != 0 {
		t.Errorf("the code's files reached the host's work dir: %v", ents)
	}

	// Deleting files makes room again.
	e = s.mustRun("import os, glob\nfor p in glob.glob('f*'):\n    if p != 'f0':\n        os.remove(p)\nopen('after', 'wb').write(b'y' * 2**20)\nprint(sorted(os.listdir('.')))")
	if strings.TrimSpace(e.stdout) != "['after', 'f0']" {
		t.Errorf("after deleting: %s", e)
	}
	// The deleted files' blocks go back to the host's disk: the mount discards them once
	// the journal commits them (a sync asks for that; the discards follow it, not within it).
	s.mustRun("import os\nos.sync()")
	var used int64
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if fi, err = os.Stat(img); err != nil {
			t.Fatal(err)
		}
		if used = fi.Sys().(*syscall.Stat_t).Blocks * 512; used <= 16<<20 || time.Now().After(deadline) {
			break
		}
	}
	if used > 16<<20 {
		t.Errorf("after deleting 24 MiB of 29 MiB, the image still takes %d bytes of the host's disk", used)
	}

	// A worker that will not stop is killed; the fresh one sees the same files.
	e = s.run("while True:\n    try:\n        while True:\n            pass\n    except KeyboardInterrupt:\n        pass", 300*time.Millisecond)
	if e.res.Status != runner.StatusTimeout || !e.res.StateReset {
		t.Fatalf("the stubborn loop: %s", e)
	}
	e = s.mustRun("import os\nprint(sorted(os.listdir('.')), os.path.getsize('f0'), os.path.getsize('after'))")
	if strings.TrimSpace(e.stdout) != "['after', 'f0'] 4194304 1048576" {
		t.Errorf("after the worker's restart: %s", e)
	}
	if _, m := s.health(); !m[featDisk].Enforced {
		t.Errorf("the fresh worker's report: %+v", m[featDisk])
	}
	e = s.mustRun(fillCode)
	if !strings.HasPrefix(e.stdout, "ENOSPC ") {
		t.Errorf("the fresh worker is not bounded: %s", e)
	}
}

// TestDiskLimitOfSession: a session's limits.max_disk_bytes overrides the runner's, and
// the session's image goes with its work dir when the session closes.
func TestDiskLimitOfSession(t *testing.T) {
	t.Parallel()
	needDisk(t)
	s := open(t, nil, func(s *runner.Session) { s.Limits.MaxDiskBytes = 16 << 20 })
	e := s.mustRun("import os\nst = os.statvfs('.')\nprint(st.f_blocks * st.f_frsize <= 16 * 2**20, st.f_bavail * st.f_frsize > 8 * 2**20)")
	if strings.TrimSpace(e.stdout) != "True True" {
		t.Errorf("the session's filesystem: %s", e)
	}
	img := diskImagePath(s.sess.WorkDir)
	if fi, err := os.Stat(img); err != nil || fi.Size() != 16<<20 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the image: %v %v", fi, err)
	}
	if err := s.r.CloseSession(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(img); !os.IsNotExist(err) {
		t.Errorf("the image outlived the session: %v", err)
	}
}

// TestDiskFilesOutliveThePlugin: a session's files stay in its image when its plugin
// process stops, and a later process of the session (which may lease another uid) finds
// them and may write them.
func TestDiskFilesOutliveThePlugin(t *testing.T) {
	t.Parallel()
	needDisk(t)
	first := open(t, map[string]any{"max_disk_bytes": "16MiB"}, nil)
	first.mustRun("open('kept.txt', 'w').write('from the first process')")
	first.pc.Kill()
	second := openOn(t, launch(t, map[string]any{"max_disk_bytes": "16MiB"}), func(s *runner.Session) {
		*s = first.sess
		s.ID += "-again" // another uid, most likely
	})
	e := second.mustRun("print(open('kept.txt').read())\nopen('kept.txt', 'a').write('!')")
	if strings.TrimSpace(e.stdout) != "from the first process" {
		t.Errorf("in the second process: %s", e)
	}
}

// TestDiskLimitUnavailable: where the disk limit cannot be enforced (here, no mkfs.ext4)
// the session runs as before, on the plain work dir, and Health says the limit is not
// enforced and why.
func TestDiskLimitUnavailable(t *testing.T) {
	saved := mkfsPaths
	mkfsPaths = []string{"/nonexistent/mkfs.ext4"}
	t.Cleanup(func() { mkfsPaths = saved })
	r := newRunner(nil)
	if ds := r.Configure(context.Background(), base.ConfigureRequest{Config: []byte(`{"max_disk_bytes": "16MiB"}`)}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	ctx := context.Background()
	wd := newWorkDir(t)
	if err := r.OpenSession(ctx, runner.Session{ID: "no-mkfs", WorkDir: wd}); err != nil {
		t.Fatal(err)
	}
	defer r.CloseSession(ctx)
	h, err := r.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var disk *runner.IsolationFeature
	for i, f := range h.Isolation {
		if f.Name == featDisk {
			disk = &h.Isolation[i]
		}
	}
	want := "mkfs.ext4 not found"
	if os.Geteuid() != 0 {
		want = "does not run as root"
	}
	if disk == nil || disk.Enforced || !strings.Contains(disk.Detail, want) {
		t.Fatalf("health: %+v", disk)
	}
	res, err := r.Execute(ctx, runner.ExecuteRequest{ExecutionID: "w", Input: "open('plain.txt', 'w').write('x')"}, func(runner.Event) error { return nil })
	if err != nil || res.Status != runner.StatusOK {
		t.Fatalf("%v %+v", err, res)
	}
	if _, err := os.Stat(filepath.Join(wd, "plain.txt")); err != nil {
		t.Errorf("the file is not in the plain work dir: %v", err)
	}
	if _, err := os.Stat(diskImagePath(wd)); !os.IsNotExist(err) {
		t.Errorf("an image was made: %v", err)
	}
}

// TestDiskImageInUse: a worker never mounts the session's image while anything else
// holds it (a previous worker's mount not yet gone): it waits, then fails, rather than
// mounting the filesystem twice; once the image is free the session opens.
func TestDiskImageInUse(t *testing.T) {
	t.Parallel()
	needDisk(t)
	wd := newWorkDir(t)
	img := diskImagePath(wd)
	if err := makeDiskImage(img, 16<<20, wd, -1, -1); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	l := launch(t, map[string]any{"max_disk_bytes": "16MiB"})
	err = l.r.OpenSession(context.Background(), runner.Session{ID: "in-use", WorkDir: wd})
	if err == nil || !strings.Contains(err.Error(), "still in use") {
		t.Fatalf("open session while the image is held: %v", err)
	}
	f.Close()
	s := openOn(t, launch(t, map[string]any{"max_disk_bytes": "16MiB"}), func(s *runner.Session) { s.ID, s.WorkDir = "in-use", wd })
	if _, m := s.health(); !m[featDisk].Enforced {
		t.Errorf("once free: %+v", m[featDisk])
	}
}

// TestSpareInDataDir: the spare image is formatted in the data_dir the host gave the
// runner, not in /tmp, and unlinked once formatted; one a runner process killed while
// formatting left there is removed when the next one is configured, while one a live
// process is formatting (its file locked) is left alone. Without a data_dir no spare is
// made.
func TestSpareInDataDir(t *testing.T) {
	needDisk(t)
	ctx := context.Background()
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, spareDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	stale, live := filepath.Join(dir, "spare-1.new"), filepath.Join(dir, "spare-2.new")
	for _, p := range []string{stale, live} {
		if err := os.WriteFile(p, []byte("half-made"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	held, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := syscall.Flock(int(held.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	r := newRunner(nil)
	t.Cleanup(func() { r.CloseSession(ctx) })
	if ds := r.Configure(ctx, base.ConfigureRequest{Config: []byte(`{"max_disk_bytes":"16MiB"}`), DataDir: dataDir}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale spare %s after the runner started: %v", stale, err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the spare a live process formats was removed: %v", err)
	}
	var where string
	for deadline := time.Now().Add(20 * time.Second); where == ""; time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		if r.spare != nil {
			where, err = os.Readlink(fmt.Sprintf("/proc/self/fd/%d", r.spare.f.Fd()))
		}
		r.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if where == "" && time.Now().After(deadline) {
			t.Fatal("no disk image was formatted ahead")
		}
	}
	if filepath.Dir(where) != dir || !strings.HasSuffix(where, " (deleted)") {
		t.Errorf("the spare image is %q, want an unlinked file of %s", where, dir)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 || ents[0].Name() != filepath.Base(live) {
		t.Errorf("%s holds %v, want only the live process's file", dir, ents)
	}

	if sp := formatSpare(settings{limits: r.set.limits, disable: map[string]bool{}}); sp != nil {
		sp.close()
		t.Error("a spare image was formatted without a data_dir")
	}
}

// TestPreparedDiskImage: a runner waiting for its session formats the session's disk
// image ahead (mkfs off the cold start); the session that opens gets a copy of it, holes
// kept, whose root is the sandbox uid's, with no lost+found, and the limit holds as with
// an image formatted at open.
func TestPreparedDiskImage(t *testing.T) {
	needDisk(t)
	ctx := context.Background()
	r := newRunner(nil)
	if ds := r.Configure(ctx, base.ConfigureRequest{Config: []byte(`{"max_disk_bytes":"32MiB"}`), DataDir: t.TempDir()}); ds.HasErrors() {
		t.Fatal(ds.Err())
	}
	// The filesystem's UUID (superblock at 1024, UUID at 0x68 in it) tells the spare's
	// copy from an image formatted at open.
	uuid := func(f *os.File) []byte {
		t.Helper()
		b := make([]byte, 16)
		if _, err := f.ReadAt(b, 1024+0x68); err != nil {
			t.Fatal(err)
		}
		return b
	}
	var spareUUID []byte
	for deadline := time.Now().Add(20 * time.Second); spareUUID == nil; time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		if r.spare != nil {
			spareUUID = uuid(r.spare.f)
		}
		r.mu.Unlock()
		if spareUUID == nil && time.Now().After(deadline) {
			t.Fatal("no disk image was formatted ahead")
		}
	}
	wd := newWorkDir(t)
	if err := r.OpenSession(ctx, runner.Session{ID: "prepared-disk", WorkDir: wd}); err != nil {
		t.Fatal(err)
	}
	defer r.CloseSession(ctx)
	r.mu.Lock()
	left := r.spare
	r.mu.Unlock()
	if left != nil {
		t.Fatal("the spare image is still held after the session opened")
	}
	img, err := os.Open(diskImagePath(r.sb.workDir))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if got := uuid(img); !bytes.Equal(got, spareUUID) {
		t.Fatalf("the session's image is filesystem %x, not the spare %x: formatted at open", got, spareUUID)
	}
	fi, err := img.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if used := fi.Sys().(*syscall.Stat_t).Blocks * 512; fi.Size() != 32<<20 || used > 4<<20 {
		t.Fatalf("the session's image is %d bytes, %d on disk; want 32 MiB, sparse", fi.Size(), used)
	}
	run := func(code string) string {
		t.Helper()
		res := runIn(t, r, code)
		if res.Status != runner.StatusOK {
			t.Fatalf("%q: %+v", code, res)
		}
		return res.Output
	}
	want := fmt.Sprintf("%d %d [] 0o700\n", r.sb.uid, r.sb.gid)
	if got := run("import os; st = os.stat('.'); print(st.st_uid, st.st_gid, os.listdir('.'), oct(st.st_mode & 0o777))"); got != want {
		t.Fatalf("the work dir from the prepared image: %q, want %q", got, want)
	}
	if got := run(fillCode); !strings.HasPrefix(got, "ENOSPC ") {
		t.Fatalf("writing 96 MiB under a 32 MiB limit: %q", got)
	}
}

// TestCopySparse: a copy of an image keeps its holes and its data, byte for byte.
func TestCopySparse(t *testing.T) {
	dir := t.TempDir()
	src, err := os.Create(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	if err := src.Truncate(size); err != nil {
		t.Fatal(err)
	}
	chunks := map[int64]string{0: "superblock", 3<<20 + 17: "middle", size - 5: "tail!"}
	for off, s := range chunks {
		if _, err := src.WriteAt([]byte(s), off); err != nil {
			t.Fatal(err)
		}
	}
	dst, err := os.Create(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	if err := copySparse(dst, src, size); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(src.Name())
	b, _ := os.ReadFile(dst.Name())
	if !bytes.Equal(a, b) {
		t.Fatal("the copy differs from its source")
	}
	fi, _ := dst.Stat()
	if used := fi.Sys().(*syscall.Stat_t).Blocks * 512; fi.Size() != size || used > 1<<20 {
		t.Fatalf("the copy is %d bytes, %d of them on disk; want %d, sparse", fi.Size(), used, size)
	}
}

// waitImageFree waits until no mount holds the image at path (its loop device keeps the
// image's lock until the mount goes).
func waitImageFree(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the image %s is still held", path)
		}
	}
}

// debugfs runs a debugfs request on the image (written to with write).
func debugfs(t *testing.T, img, req string, write bool) string {
	t.Helper()
	args := []string{"-R", req, img}
	if write {
		args = append([]string{"-w"}, args...)
	}
	out, err := exec.Command("debugfs", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs %q: %v: %s", req, err, out)
	}
	return string(out)
}

// TestImageErrors: imageErrors finds a filesystem that recorded errors by its
// superblock's state, and one whose journal holds the errno of an abort (the superblock
// not updated), and passes a clean one.
func TestImageErrors(t *testing.T) {
	mkfs, err := findMkfs()
	if err != nil {
		t.Skip(err)
	}
	if _, err := exec.LookPath("debugfs"); err != nil {
		t.Skip(err)
	}
	img := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := formatImage(mkfs, img, 16<<20, "", -1, -1); err != nil {
		t.Fatal(err)
	}
	check := func(want bool) {
		t.Helper()
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if got, err := imageErrors(f); got != want || err != nil {
			t.Fatalf("imageErrors = %v, %v; want %v", got, err, want)
		}
	}
	check(false)
	debugfs(t, img, "ssv state 3", true) // valid, errors
	check(true)
	debugfs(t, img, "ssv state 1", true)
	check(false)
	// The journal's superblock is its block 0 (found with debugfs, not the code's way):
	// s_errno, at 0x20, big-endian, set to -EIO as jbd2 does when it aborts.
	var blk, bs int64
	if _, err := fmt.Sscan(strings.TrimSpace(lastLine(debugfs(t, img, "bmap <8> 0", false))), &blk); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(debugfs(t, img, "stats", false), "\n") {
		if v, ok := strings.CutPrefix(l, "Block size:"); ok {
			fmt.Sscan(strings.TrimSpace(v), &bs)
		}
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff, 0xff, 0xff, 0xfb}, blk*bs+0x20); err != nil || bs == 0 {
		t.Fatalf("write the journal's errno at block %d of %d bytes: %v", blk, bs, err)
	}
	f.Close()
	check(true)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestDiskRepairedBeforeMount: a session's image whose filesystem recorded errors (as
// after its journal aborted on a full host disk) is checked and repaired with e2fsck
// before a worker mounts it, and the next execution (on stderr) and the health detail
// say so; the session's files are still there. It used to be mounted as it was, the
// kernel only warning "mounting fs with errors".
func TestDiskRepairedBeforeMount(t *testing.T) {
	t.Parallel()
	needDisk(t)
	if _, err := findFsck(); err != nil {
		t.Skip(err)
	}
	first := open(t, map[string]any{"max_disk_bytes": "16MiB"}, nil)
	first.mustRun("import os\nopen('kept.txt', 'w').write('kept')\nos.sync()")
	first.pc.Kill()
	img := diskImagePath(first.sess.WorkDir)
	waitImageFree(t, img)
	debugfs(t, img, "ssv state 3", true)

	second := openOn(t, launch(t, map[string]any{"max_disk_bytes": "16MiB"}), func(s *runner.Session) { *s = first.sess })
	e := second.mustRun("print(open('kept.txt').read())\nopen('new.txt', 'w').write('x')")
	if strings.TrimSpace(e.stdout) != "kept" || !strings.Contains(e.stderr, "repaired by e2fsck -p") {
		t.Fatalf("the first execution on the repaired image: %s", e)
	}
	if _, m := second.health(); !m[featDisk].Enforced || !strings.Contains(m[featDisk].Detail, "repaired by e2fsck") {
		t.Errorf("health: %+v", m[featDisk])
	}
	if e := second.mustRun("print(1)"); e.stderr != "" {
		t.Errorf("the note comes once: %s", e)
	}
}

// TestDiskBrokenRestartsWorker: when the session's filesystem breaks (its journal aborts,
// as when the host's disk is full, and every write fails with EROFS) between executions,
// the next one runs on a fresh worker whose filesystem e2fsck repaired; when it breaks
// during an execution, that execution's stderr says so with a state reset, and the next
// one runs on a repaired filesystem. Writable again, the synced files still there; it used
// to stay read-only until the worker restarted for another reason.
func TestDiskBrokenRestartsWorker(t *testing.T) {
	t.Parallel()
	needDisk(t)
	if _, err := findFsck(); err != nil {
		t.Skip(err)
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip(err)
	}
	s := open(t, map[string]any{"max_disk_bytes": "16MiB"}, nil)
	s.mustRun("import os\nopen('kept.txt', 'w').write('kept')\nos.sync()")
	// What a full host disk does to the image's journal, done on purpose.
	abort := func() {
		t.Helper()
		pid := s.workerPID()
		if out, err := exec.Command("nsenter", "-t", fmt.Sprint(pid), "-m", "mount", "-o", "remount,abort", s.sess.WorkDir).CombinedOutput(); err != nil {
			t.Fatalf("abort the session's filesystem: %v: %s", err, out)
		}
	}
	const write = "print(open('kept.txt').read())\nopen('after.txt', 'w').write('x')\nprint(open('after.txt').read())"

	abort()
	e := s.mustRun(write)
	if strings.TrimSpace(e.stdout) != "kept\nx" || !e.res.StateReset || !strings.Contains(e.stderr, "repaired by e2fsck") {
		t.Fatalf("the execution after the filesystem broke: %s", e)
	}

	// During an execution: it writes until a write fails.
	done := make(chan outcome, 1)
	go func() {
		done <- s.run("import time\nopen('started', 'w').close()\nfor i in range(6000):\n    try:\n        open('probe', 'w').write('x')\n    except OSError as e:\n        print(e.errno)\n        break\n    time.sleep(0.01)", 0)
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(s.workerPath(filepath.Join(s.sess.WorkDir, "started"))); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the execution did not start")
		}
	}
	abort()
	e = <-done
	if e.err != nil || strings.TrimSpace(e.stdout) != "30" || !e.res.StateReset || !strings.Contains(e.stderr, "read-only") {
		t.Fatalf("the execution during which the filesystem broke: %s", e)
	}
	e = s.mustRun(write)
	if strings.TrimSpace(e.stdout) != "kept\nx" || e.res.StateReset || !strings.Contains(e.stderr, "repaired by e2fsck") {
		t.Fatalf("the execution after: %s", e)
	}
}
