package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A session's disk limit: its work dir is an ext4 filesystem of its own, kept in a sparse
// image file beside the work dir (<work dir>.disk.img, root's, mode 0600) and mounted on
// the work dir inside each worker's private mount namespace through a loop device. The
// kernel answers ENOSPC once the filesystem is full, so one session cannot write more
// than its limit however many files it writes. The image is sparse and nothing is
// reserved: the limit bounds each session, not the sum of them, and the host keeps its
// own reserve of free space (host.min_free_disk). Should the host's disk fill anyway, the
// image's journal aborts (writes then fail with EROFS): the runner replaces the worker
// and e2fsck repairs the image before the next mount (checkImage). The image costs only
// what is written to it, lasts as long as the session (its files survive worker restarts and
// plugin restarts) and is removed with the work dir. Space freed inside the filesystem is
// given back to the host's disk as the files go (the mount discards).

const (
	// diskImageSuffix names a session's image after its work dir.
	diskImageSuffix = ".disk.img"
	// minDiskBytes is the smallest disk limit: below it ext4's own metadata (inode
	// tables, journal) takes most of the image.
	minDiskBytes = 8 << 20
	// mkfsTimeout bounds formatting an image.
	mkfsTimeout = 30 * time.Second
	// diskLockWait is how long a worker's init waits for the image to be released by the
	// session's previous worker (its mount goes when its last process has exited).
	diskLockWait = 10 * time.Second
	// ext4Magic is statfs's f_type of an ext4 filesystem.
	ext4Magic = 0xEF53
)

// Where the disk limit's tools are looked for; tests point them elsewhere to simulate a
// machine without them.
var (
	mkfsPaths   = []string{"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"}
	fsckPaths   = []string{"/usr/sbin/e2fsck", "/sbin/e2fsck"}
	loopControl = "/dev/loop-control"
)

// fsckTimeout bounds checking and repairing an image (a few ms for an image of MiBs).
const fsckTimeout = 2 * time.Minute

// diskImage is a session's disk image as the plugin knows it.
type diskImage struct {
	path string
	size int64

	mu sync.Mutex
	// fresh is set while the image, formatted by this process, has never been mounted:
	// the first mount removes its lost+found.
	fresh bool
	// required is set once the image may hold the session's files (a worker mounted it,
	// or it is an earlier process's): from then on a worker that cannot mount it must not
	// start, as it would show the session a work dir without its files.
	required bool
}

// diskConfig is what init is told about the session's image.
type diskConfig struct {
	Image    string `json:"image"`
	Fresh    bool   `json:"fresh,omitempty"`
	Required bool   `json:"required,omitempty"`
	// Fsck is e2fsck's path ("" when the machine has none): an image whose filesystem
	// recorded errors is checked and repaired with it before it is mounted.
	Fsck string `json:"fsck,omitempty"`
}

// diskImagePath is the image of the session whose work dir is wd.
func diskImagePath(wd string) string {
	return filepath.Join(filepath.Dir(wd), filepath.Base(wd)+diskImageSuffix)
}

// findMkfs returns the path of mkfs.ext4.
func findMkfs() (string, error) { return findTool("mkfs.ext4", mkfsPaths) }

// findFsck returns the path of e2fsck.
func findFsck() (string, error) { return findTool("e2fsck", fsckPaths) }

// findTool returns the first of paths that is an executable file.
func findTool(name string, paths []string) (string, error) {
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (looked in %s): install e2fsprogs", name, strings.Join(paths, ", "))
}

// diskUnavailable says why this machine or configuration cannot give the session a
// filesystem of its own, or "" when it can.
func diskUnavailable(sb *sandbox) string {
	switch {
	case sb.limits.MaxDiskBytes == 0:
		return "max_disk_bytes is 0: the session's files are bounded only by the free space of the host's disk"
	case sb.flags&unix.CLONE_NEWNS == 0:
		return "needs mount_ns: the session's filesystem is mounted in the sandbox's own mount namespace"
	case os.Geteuid() != 0:
		return fmt.Sprintf("the plugin does not run as root (uid %d), so it cannot attach a loop device and mount the session's filesystem", os.Geteuid())
	}
	if _, err := os.Stat(loopControl); err != nil {
		return fmt.Sprintf("loop devices are not available (%v): load the loop module", err)
	}
	return ""
}

// setupDisk gives the sandbox its disk image, formatting a new one unless the session
// has one from an earlier process. When it cannot, the feature is recorded as not
// enforced, with the reason, and the session runs without it.
func setupDisk(sb *sandbox, spare *spareImage) {
	if sb.set.disable[featDisk] {
		return
	}
	img := diskImagePath(sb.workDir)
	if why := diskUnavailable(sb); why != "" {
		if _, err := os.Lstat(img); err == nil {
			why += fmt.Sprintf("; the files the session wrote while it had the limit stay in %s, not mounted", img)
		}
		sb.static.fail(featDisk, why)
		return
	}
	if fi, err := os.Lstat(img); err == nil {
		if !fi.Mode().IsRegular() {
			sb.static.fail(featDisk, fmt.Sprintf("the session's disk image %s is not a regular file", img))
			return
		}
		sb.disk = &diskImage{path: img, size: fi.Size(), required: true}
		return
	}
	size := int64(sb.limits.MaxDiskBytes)
	// A spare image formatted ahead serves a session of its size that brings no files (its
	// root is given to the session's uid when the first worker mounts it); otherwise, or
	// should the copy fail, one is formatted now.
	if err := spare.copyTo(img, size, sb.workDir); err != nil {
		if err := makeDiskImage(img, size, sb.workDir, sb.uid, sb.gid); err != nil {
			sb.static.fail(featDisk, err.Error())
			return
		}
	}
	sb.disk = &diskImage{path: img, size: size, fresh: true}
}

// spareImage is an empty ext4 image formatted ahead of its session, while a pre-started
// plugin process waits for one: opening the session then copies its few hundred KiB
// instead of running mkfs.ext4 (~13 ms here) on the session's cold start. Its file is
// unlinked once formatted, so only the open descriptor holds it and nothing stays behind
// whatever becomes of the process afterwards; one killed while formatting leaves its file
// in the data_dir, removed by the next runner process's sweepSpares.
type spareImage struct {
	size int64
	f    *os.File
}

// spareDir is the folder of the data_dir in which spare images are formatted: on the disk
// of the sessions' images, not in a /tmp that may be RAM, and where a half-made one can be
// found again.
const spareDir = "python-spare"

// spareGlob matches the spare images being formatted (or left half-made) in spareDir.
const spareGlob = "spare-*.new"

// formatSpare formats a spare image of the runner's max_disk_bytes, or returns nil when
// the disk limit is off or cannot be had here (setupDisk then says why), or the host
// gave no data_dir to format it in. The file is locked from its creation until it is
// unlinked, so that sweepSpares in another process leaves it alone.
func formatSpare(set settings) *spareImage {
	size := int64(set.limits.MaxDiskBytes)
	if size == 0 || set.disable[featDisk] || os.Geteuid() != 0 || set.dataDir == "" {
		return nil
	}
	if _, err := os.Stat(loopControl); err != nil {
		return nil
	}
	mkfs, err := findMkfs()
	if err != nil {
		return nil
	}
	dir := filepath.Join(set.dataDir, spareDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil
	}
	f, err := os.CreateTemp(dir, spareGlob)
	if err != nil {
		return nil
	}
	defer os.Remove(f.Name())
	// A sweep between the create and the lock removes the file: mkfs then fails on the
	// missing path, and there is no spare this time, nothing left behind either.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil
	}
	if err := formatImage(mkfs, f.Name(), size, "", -1, -1); err != nil {
		f.Close()
		return nil
	}
	return &spareImage{size: size, f: f}
}

// sweepSpares removes the spare images that runner processes killed while formatting
// them left in dataDir (a live one holds its file's lock until it unlinks it), and
// returns how many.
func sweepSpares(dataDir string) int {
	if dataDir == "" {
		return 0
	}
	return sweepUnlocked(filepath.Join(dataDir, spareDir, spareGlob), 0, os.Remove)
}

// sweepUnlocked removes (with remove) each path matching pattern that was made at least
// minAge ago and that no process holds the lock of (flock; a live one holds it while it
// uses the path), and returns how many it removed.
func sweepUnlocked(pattern string, minAge time.Duration, remove func(string) error) int {
	paths, _ := filepath.Glob(pattern)
	n := 0
	for _, p := range paths {
		if fi, err := os.Lstat(p); err != nil || time.Since(fi.ModTime()) < minAge {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil && remove(p) == nil {
			n++
		}
		f.Close()
	}
	return n
}

// close releases the spare image; a nil one is fine.
func (s *spareImage) close() {
	if s != nil {
		s.f.Close()
	}
}

// errNoSpare is copyTo's answer when the spare image cannot serve.
var errNoSpare = errors.New("no spare disk image of that size for an empty work dir")

// copyTo writes the spare image to path, holes kept, for a session whose image is to be
// size bytes and whose work dir wd is empty; through a temporary name renamed into place,
// as makeDiskImage does.
func (s *spareImage) copyTo(path string, size int64, wd string) error {
	if s == nil || s.size != size {
		return errNoSpare
	}
	if ents, err := os.ReadDir(wd); err != nil || len(ents) > 0 {
		return errNoSpare
	}
	tmp := path + ".new"
	_ = os.Remove(tmp)
	dst, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	err = copySparse(dst, s.f, size)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// copySparse copies the size bytes of src to dst, writing only src's data extents (found
// with SEEK_DATA and SEEK_HOLE), so dst's holes stay holes.
func copySparse(dst, src *os.File, size int64) error {
	if err := dst.Truncate(size); err != nil {
		return err
	}
	fd := int(src.Fd())
	buf := make([]byte, 256<<10)
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // no data after off
		}
		if err != nil {
			return err
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		for p := data; p < hole; {
			n := int(min(int64(len(buf)), hole-p))
			if _, err := src.ReadAt(buf[:n], p); err != nil {
				return err
			}
			if _, err := dst.WriteAt(buf[:n], p); err != nil {
				return err
			}
			p += int64(n)
		}
		off = hole
	}
	return nil
}

// makeDiskImage formats a sparse ext4 image of size bytes at path, its root owned by
// uid and gid (when not negative) and holding a copy of what the work dir wd already
// holds (a session that ran without the limit before). It is written under a temporary
// name and renamed into place, so a half-made image is never taken for the session's.
func makeDiskImage(path string, size int64, wd string, uid, gid int) error {
	mkfs, err := findMkfs()
	if err != nil {
		return err
	}
	tmp := path + ".new"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create the session's disk image: %w", err)
	}
	f.Close()
	if err := formatImage(mkfs, tmp, size, wd, uid, gid); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("put the session's disk image in place: %w", err)
	}
	return nil
}

// formatImage sizes the file at path to size bytes (sparse) and formats it with mkfs, as
// makeDiskImage says.
func formatImage(mkfs, path string, size int64, wd string, uid, gid int) error {
	if err := os.Truncate(path, size); err != nil {
		return fmt.Errorf("size the session's disk image: %w", err)
	}
	// No blocks reserved for root; the journal is not written out (the sparse file reads
	// as zeros), so the image costs a few hundred KiB until the code writes to it.
	ext := "lazy_journal_init=1"
	if uid >= 0 {
		ext += fmt.Sprintf(",root_owner=%d:%d", uid, gid)
	}
	args := []string{"-q", "-F", "-m", "0", "-E", ext}
	if ents, err := os.ReadDir(wd); err == nil && len(ents) > 0 {
		args = append(args, "-d", wd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), mkfsTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, mkfs, append(args, path)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("format the session's disk image with %s: %v: %s", mkfs, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// config is what the next worker's init is told, nil without an image.
func (d *diskImage) config() *diskConfig {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	fsck, _ := findFsck()
	return &diskConfig{Image: d.path, Fresh: d.fresh, Required: d.required, Fsck: fsck}
}

// diskStarted records what a worker's init reported about the image: once mounted it
// must be mounted by every later worker. An image the first worker could not mount is given
// up (removed, the feature reported as not enforced), and the session runs without it.
func (sb *sandbox) diskStarted(rep *report) {
	d := sb.disk
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case rep.enforced(featDisk):
		d.required, d.fresh = true, false
	case !d.required:
		detail := "not checked"
		if f := rep.get(featDisk); f != nil {
			detail = f.Detail
		}
		sb.static.fail(featDisk, detail)
		if d.fresh {
			_ = os.Remove(d.path)
		}
		sb.disk = nil
	}
}

// verifyDisk checks from outside that the worker's work dir is the session's filesystem,
// no larger than its image.
func (w *worker) verifyDisk() {
	if !w.rep.enforced(featDisk) || w.sb.disk == nil {
		return
	}
	var st unix.Statfs_t
	p := fmt.Sprintf("/proc/%d/root%s", w.pyPID, w.sb.workDir)
	if err := unix.Statfs(p, &st); err != nil {
		w.rep.fail(featDisk, fmt.Sprintf("cannot check the worker's work dir: %v", err))
		return
	}
	if total := int64(st.Blocks) * st.Bsize; st.Type != ext4Magic || total > w.sb.disk.size {
		w.rep.fail(featDisk, fmt.Sprintf("the worker's work dir is a filesystem of type %#x and %d bytes, not the session's image of %d", st.Type, total, w.sb.disk.size))
	}
}

// mountDisk, in init, attaches the session's image to a free loop device and mounts it
// on the work dir (in init's private mount namespace), after waiting for the session's
// previous worker to release it: the image's open file carries an exclusive lock, which
// the loop device holds until its last user, the mount, goes. It returns an error only
// when the image must be mounted (it may hold the session's files) and cannot be; otherwise a
// failure is recorded in rep and the worker runs on the plain work dir.
func mountDisk(cfg *initConfig, rep *report, setup *initSetup) error {
	d := cfg.Disk
	dev, repair, err := attachDisk(d, cfg.WorkDir)
	if err == nil {
		err = prepareDiskRoot(cfg, d.Fresh)
		if err != nil {
			_ = unix.Unmount(cfg.WorkDir, unix.MNT_DETACH)
		}
	}
	if err != nil {
		if d.Required {
			return fmt.Errorf("mount the session's disk image %s on its work dir: %w", d.Image, err)
		}
		rep.fail(featDisk, "mount the session's disk image: "+err.Error())
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(cfg.WorkDir, &st); err != nil {
		rep.fail(featDisk, "statfs the session's filesystem: "+err.Error())
		return nil
	}
	detail := fmt.Sprintf("the work dir is an ext4 filesystem of its own (%d bytes, %d free; %s on %s): a write beyond fails with ENOSPC",
		int64(st.Blocks)*st.Bsize, int64(st.Bavail)*st.Bsize, d.Image, dev)
	if repair != "" {
		detail += "; " + repair
	}
	rep.set(featDisk, true, detail)
	setup.DiskDevice, setup.DiskRepair = filepath.Base(dev), repair
	return nil
}

// attachDisk locks the image, checks and repairs its filesystem if it recorded errors
// (checkImage), binds it to a loop device that detaches itself once unused, and mounts
// that on dir; it returns the device and what the repair did ("" when none was needed).
func attachDisk(d *diskConfig, dir string) (string, string, error) {
	image := d.Image
	img, err := os.OpenFile(image, os.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", "", err
	}
	// The loop device keeps this open file, and so its lock, until it is detached.
	defer img.Close()
	for end := time.Now().Add(diskLockWait); ; {
		err := unix.Flock(int(img.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return "", "", fmt.Errorf("lock the image: %w", err)
		}
		if time.Now().After(end) {
			return "", "", fmt.Errorf("the image is still in use (by the session's previous worker?) after %s", diskLockWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The lock is held: no mount of the image is left, and e2fsck may work on it.
	repair, err := checkImage(img, d.Fsck)
	if err != nil {
		return "", "", err
	}
	ctl, err := unix.Open(loopControl, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", "", fmt.Errorf("open %s: %w", loopControl, err)
	}
	defer unix.Close(ctl)
	for try := 0; try < 32; try++ {
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", "", fmt.Errorf("find a free loop device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		fd, err := openLoop(dev)
		if err != nil {
			return "", "", err
		}
		lc := unix.LoopConfig{Fd: uint32(img.Fd())}
		// Direct I/O keeps the image's blocks out of the page cache a second time.
		lc.Info.Flags = unix.LO_FLAGS_AUTOCLEAR | unix.LO_FLAGS_DIRECT_IO
		copy(lc.Info.File_name[:len(lc.Info.File_name)-1], image)
		err = unix.IoctlLoopConfigure(fd, &lc)
		if errors.Is(err, unix.EINVAL) {
			lc.Info.Flags &^= unix.LO_FLAGS_DIRECT_IO
			err = unix.IoctlLoopConfigure(fd, &lc)
		}
		if errors.Is(err, unix.EBUSY) {
			// Another process took the device between the two calls.
			unix.Close(fd)
			continue
		}
		if err != nil {
			unix.Close(fd)
			return "", "", fmt.Errorf("attach the image to %s: %w", dev, err)
		}
		// Once mounted, closing fd leaves the mount the device's only user: it detaches
		// itself when the mount goes. If the mount fails, closing fd detaches it now.
		// discard: blocks the session's files free are punched out of the sparse image,
		// so the host gets its space back when files are deleted, not only when the
		// session goes. Where the image's filesystem cannot punch holes the loop device
		// offers no discard and ext4 mounts without it.
		err = unix.Mount(dev, dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV, "discard")
		unix.Close(fd)
		if err != nil {
			return "", "", fmt.Errorf("mount %s on %s: %w", dev, dir, err)
		}
		return dev, repair, nil
	}
	return "", "", errors.New("no free loop device after 32 tries")
}

// openLoop opens a loop device, waiting briefly for devtmpfs to create a new one's node.
func openLoop(dev string) (int, error) {
	for i := 0; ; i++ {
		fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err == nil {
			return fd, nil
		}
		if !errors.Is(err, unix.ENOENT) || i >= 100 {
			return -1, fmt.Errorf("open %s: %w", dev, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// prepareDiskRoot makes the mounted filesystem the worker's work dir: owned by the
// session's uid (files of an earlier process, which had another uid, are given to this
// one), private to it, and without the lost+found of a fresh image.
func prepareDiskRoot(cfg *initConfig, fresh bool) error {
	if fresh {
		// Not needed (e2fsck recreates it) and not the code's: an empty work dir is what
		// a session starts with. Should it not go (a copied work dir had one), it stays.
		_ = unix.Rmdir(filepath.Join(cfg.WorkDir, "lost+found"))
	}
	if cfg.UID >= 0 {
		var st unix.Stat_t
		if err := unix.Stat(cfg.WorkDir, &st); err != nil {
			return err
		}
		if int(st.Uid) != cfg.UID || int(st.Gid) != cfg.GID {
			if err := chownTree(cfg.WorkDir, cfg.UID, cfg.GID); err != nil {
				return fmt.Errorf("give the session's files to uid %d: %w", cfg.UID, err)
			}
		}
	}
	return unix.Chmod(cfg.WorkDir, 0o700)
}

// The parts of an ext4 superblock (at byteOffset 1024 of the image) that checkImage reads.
const (
	sbOffset        = 1024
	sbMagicOff      = 0x38  // __le16 s_magic
	sbStateOff      = 0x3A  // __le16 s_state
	sbLogBlockOff   = 0x18  // __le32 s_log_block_size
	sbCompatOff     = 0x5C  // __le32 s_feature_compat
	sbJnlBackupOff  = 0xFD  // __u8 s_jnl_backup_type
	sbJnlBlocksOff  = 0x10C // __le32 s_jnl_blocks[17]: a copy of the journal inode's i_block
	ext4ErrorFS     = 0x2   // s_state: errors detected
	compatJournal   = 0x4   // s_feature_compat: has_journal
	jnlBackupBlocks = 1     // s_jnl_backup_type: s_jnl_blocks holds the journal's i_block
	extentMagic     = 0xF30A
	jbd2Magic       = 0xC03B3998
	jbd2ErrnoOff    = 0x20 // __be32 s_errno of the journal superblock
)

// imageErrors says whether the filesystem in img recorded errors: its superblock's state
// has errors (set when ext4 hit one, a journal aborted on a full host disk among them),
// or its journal's superblock holds the errno of an abort (found through the superblock's
// copy of the journal inode's extent). The kernel mounts such a filesystem anyway, only
// warning; e2fsck must see it first.
func imageErrors(img *os.File) (bool, error) {
	sb := make([]byte, 1024)
	if _, err := img.ReadAt(sb, sbOffset); err != nil {
		return false, fmt.Errorf("read the image's superblock: %w", err)
	}
	le16 := func(b []byte, off int) uint16 { return uint16(b[off]) | uint16(b[off+1])<<8 }
	le32 := func(b []byte, off int) uint32 { return uint32(le16(b, off)) | uint32(le16(b, off+2))<<16 }
	if le16(sb, sbMagicOff) != ext4Magic {
		return false, nil // not ext4: the mount says so
	}
	if le16(sb, sbStateOff)&ext4ErrorFS != 0 {
		return true, nil
	}
	if le32(sb, sbCompatOff)&compatJournal == 0 || sb[sbJnlBackupOff] != jnlBackupBlocks {
		return false, nil
	}
	iblock := sb[sbJnlBlocksOff : sbJnlBlocksOff+60]
	// An extent header of depth 0 whose first extent starts at the journal's block 0.
	if le16(iblock, 0) != extentMagic || le16(iblock, 2) == 0 || le16(iblock, 6) != 0 || le32(iblock, 12) != 0 {
		return false, nil
	}
	start := int64(le16(iblock, 18))<<32 | int64(le32(iblock, 20))
	bs := int64(1024) << le32(sb, sbLogBlockOff)
	jsb := make([]byte, 64)
	if _, err := img.ReadAt(jsb, start*bs); err != nil {
		return false, nil // a journal out of the image is e2fsck's to find, at a mount that fails
	}
	be32 := func(off int) uint32 {
		return uint32(jsb[off])<<24 | uint32(jsb[off+1])<<16 | uint32(jsb[off+2])<<8 | uint32(jsb[off+3])
	}
	return be32(0) == jbd2Magic && be32(jbd2ErrnoOff) != 0, nil
}

// checkImage runs e2fsck on the image img (locked, not mounted) when its filesystem
// recorded errors: -p (preen: what is safe without asking), then -y if preening is not
// enough. It returns what was done, for the session's health and its next execution;
// an error when the filesystem stays damaged or e2fsck could not run (say for want of
// space on the host's disk, which replaying the journal needs), so the session's files
// are not mounted as they are: the worker fails to start, and the next execution tries
// again. Without e2fsck the image is mounted as before, and the note says so.
func checkImage(img *os.File, fsck string) (string, error) {
	bad, err := imageErrors(img)
	if err != nil || !bad {
		return "", err
	}
	if fsck == "" {
		return "the filesystem recorded errors (the host's disk was full?), and e2fsck is not installed to repair it: files written lately may be lost; install e2fsprogs", nil
	}
	run := func(flag string) (int, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), fsckTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, fsck, flag, img.Name())
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		out, err := cmd.CombinedOutput()
		text := strings.Join(strings.Fields(strings.ReplaceAll(string(out), img.Name()+": ", "")), " ")
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), text, nil
		}
		return 0, text, err
	}
	// e2fsck's exit code: 0 clean, 1 errors corrected, 2 corrected (reboot: not ours), 4
	// errors left uncorrected, 8 operational error, 16 usage, 32 cancelled, 128 library.
	code, out, err := run("-p")
	flag := "-p"
	if err == nil && code&4 != 0 {
		flag = "-y"
		code, out, err = run("-y")
	}
	switch {
	case err != nil:
		return "", fmt.Errorf("the session's filesystem recorded errors and %s could not run: %w", fsck, err)
	case code >= 4:
		return "", fmt.Errorf("the session's filesystem recorded errors (the host's disk was full?) that %s %s could not repair (exit %d): %s; free space on the host's disk, the next execution tries again",
			fsck, flag, code, clipNote(out))
	}
	return fmt.Sprintf("the filesystem had recorded errors (the host's disk was full?) and was repaired by e2fsck %s before it was mounted: files written lately may be lost or truncated, or in lost+found (%s)", flag, clipNote(out)), nil
}

// clipNote bounds e2fsck's output in a note.
func clipNote(s string) string {
	if len(s) > 400 {
		s = s[:200] + " … " + s[len(s)-200:]
	}
	return strings.ToValidUTF8(s, "")
}
