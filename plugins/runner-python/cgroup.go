package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/limitgraph/limit/sdk/runner"
)

// cgroupPrefix starts the name of every cgroup the plugin creates; the rest is the plugin's
// pid, so a later plugin can remove the empty cgroups of one that died without cleaning up.
const cgroupPrefix = "limit-python-"

// pidsReserve is added to max_processes in the pids cgroup: the cgroup also holds init
// (a Go program with a few threads), while RLIMIT_NPROC of the session's uid counts the
// worker's own processes and threads exactly.
const pidsReserve = 16

// cgroups are a session's cgroup v1 directories, one per controller that is available.
type cgroups struct {
	// dirs maps a controller ("memory", "pids", "cpu") to the session's directory in it.
	dirs map[string]string
	// oomBase is the memory cgroup's oom_kill count when the current worker started.
	oomBase int64
}

// controllerFeatures maps cgroup v1 controllers to the features they provide.
var controllerFeatures = map[string]string{"memory": featCgMemory, "pids": featCgPids, "cpu": featCgCPU}

// newCgroups creates the session's cgroups with limits and records in rep which ones are
// in force. A controller that is missing, disabled or refuses the limit is reported and
// skipped; the other isolation still applies.
func newCgroups(name string, l runner.Limits, disable map[string]bool, rep *report) *cgroups {
	cg := &cgroups{dirs: map[string]string{}}
	mounts, err := cgroupV1Mounts()
	if err != nil {
		for _, f := range controllerFeatures {
			rep.fail(f, "cannot read the cgroup mounts: "+err.Error())
		}
		return cg
	}
	own, err := ownCgroups()
	if err != nil {
		for _, f := range controllerFeatures {
			rep.fail(f, "cannot read the plugin's cgroups: "+err.Error())
		}
		return cg
	}
	for _, ctrl := range []string{"memory", "pids", "cpu"} {
		feat := controllerFeatures[ctrl]
		if disable[feat] {
			rep.fail(feat, "disabled by disable_isolation")
			continue
		}
		mnt, ok := mounts[ctrl]
		if !ok {
			rep.fail(feat, fmt.Sprintf("no cgroup v1 %s controller is mounted (cgroup v2 has no controllers delegated on this machine)", ctrl))
			continue
		}
		parent := filepath.Join(mnt, own[ctrl])
		sweepCgroups(parent)
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			rep.fail(feat, fmt.Sprintf("create cgroup %s: %v", dir, err))
			continue
		}
		detail, err := setCgroupLimits(ctrl, dir, l)
		if err != nil {
			_ = os.Remove(dir)
			rep.fail(feat, err.Error())
			continue
		}
		cg.dirs[ctrl] = dir
		rep.set(feat, true, detail)
	}
	return cg
}

// period is the CFS period the cpu controller is given, in µs.
const period = 100000

// cfsQuota is the CFS quota, in µs per period, of cpuMillis thousandths of a core: at least
// the kernel's minimum (1 ms per period), at most every CPU of the machine (a quota above
// is no limit at all, and cpuMillis may be as large as a uint64: an operator's session
// may ask for anything).
func cfsQuota(cpuMillis uint64) int64 {
	most := uint64(runtime.NumCPU()) * 1000
	quota := int64(min(cpuMillis, most)) * period / 1000
	return max(quota, 1000)
}

// setCgroupLimits writes the controller's limits and reads them back.
func setCgroupLimits(ctrl, dir string, l runner.Limits) (string, error) {
	switch ctrl {
	case "memory":
		v := strconv.FormatUint(l.MemoryBytes, 10)
		if err := writeCgroup(dir, "memory.limit_in_bytes", v); err != nil {
			return "", err
		}
		// Without swap accounting the file is absent; with it, swap must not extend the limit.
		if _, err := os.Stat(filepath.Join(dir, "memory.memsw.limit_in_bytes")); err == nil {
			if err := writeCgroup(dir, "memory.memsw.limit_in_bytes", v); err != nil {
				return "", err
			}
		}
		got, err := readCgroupInt(dir, "memory.limit_in_bytes")
		if err != nil {
			return "", err
		}
		// The kernel rounds the limit down to whole pages.
		if uint64(got) > l.MemoryBytes || uint64(got)+uint64(os.Getpagesize()) <= l.MemoryBytes {
			return "", fmt.Errorf("memory.limit_in_bytes reads %d after writing %d", got, l.MemoryBytes)
		}
		return fmt.Sprintf("cgroup v1 memory limit %s for the whole sandbox; over it the kernel kills the worker, which is restarted", formatBytes(l.MemoryBytes)), nil
	case "pids":
		n := int64(l.MaxProcesses) + pidsReserve
		if err := writeCgroup(dir, "pids.max", strconv.FormatInt(n, 10)); err != nil {
			return "", err
		}
		if got, err := readCgroupInt(dir, "pids.max"); err != nil || got != n {
			return "", fmt.Errorf("pids.max reads %d (%v) after writing %d", got, err, n)
		}
		return fmt.Sprintf("cgroup v1 pids.max %d (max_processes %d plus %d for the sandbox's init)", n, l.MaxProcesses, pidsReserve), nil
	case "cpu":
		quota := cfsQuota(l.CPUMillis)
		if err := writeCgroup(dir, "cpu.cfs_period_us", strconv.Itoa(period)); err != nil {
			return "", err
		}
		if err := writeCgroup(dir, "cpu.cfs_quota_us", strconv.FormatInt(quota, 10)); err != nil {
			return "", err
		}
		if got, err := readCgroupInt(dir, "cpu.cfs_quota_us"); err != nil || got != quota {
			return "", fmt.Errorf("cpu.cfs_quota_us reads %d (%v) after writing %d", got, err, quota)
		}
		return fmt.Sprintf("cgroup v1 CFS quota %.2f cores (%d µs per %d µs)", float64(quota)/period, quota, period), nil
	}
	return "", fmt.Errorf("unknown controller %s", ctrl)
}

// joined takes init's setup report into account: a controller init could not join is
// dropped (the report says why). The worker's cgroups are checked from outside once it runs.
func (cg *cgroups) joined(rep *report) {
	for ctrl := range cg.dirs {
		if f := rep.get(controllerFeatures[ctrl]); f != nil && !f.Enforced {
			delete(cg.dirs, ctrl)
		}
	}
	if dir, ok := cg.dirs["memory"]; ok {
		cg.oomBase = oomKills(dir)
	}
}

// oomKilled reports whether the kernel's OOM killer acted in the memory cgroup since the
// current worker started.
func (cg *cgroups) oomKilled() bool {
	dir, ok := cg.dirs["memory"]
	return ok && oomKills(dir) > cg.oomBase
}

// procs lists the processes in the session's cgroups.
func (cg *cgroups) procs() []int {
	seen := map[int]bool{}
	var out []int
	for _, dir := range cg.dirs {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil && !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out
}

// killAll kills every process in the session's cgroups until none is left or the deadline
// passes. It is the backstop when there is no pid namespace to take the tree down.
func (cg *cgroups) killAll(deadline time.Duration) bool {
	end := time.Now().Add(deadline)
	for {
		ps := cg.procs()
		if len(ps) == 0 {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		for _, p := range ps {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// remove deletes the session's cgroups, waiting briefly for exiting processes to leave.
func (cg *cgroups) remove() error {
	var errs []error
	for ctrl, dir := range cg.dirs {
		var err error
		for i := 0; i < 200; i++ {
			err = os.Remove(dir)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove %s cgroup: %w", ctrl, err))
			continue
		}
		delete(cg.dirs, ctrl)
	}
	return errors.Join(errs...)
}

// sweepStaleCgroups sweeps (sweepCgroups) every v1 controller's parent cgroup of this
// plugin. A session's open does it too; a pre-started plugin does it while it waits, so
// that what the code of a dead plugin's session left running is stopped when the daemon
// starts again rather than when the next session opens.
func sweepStaleCgroups() {
	mounts, err := cgroupV1Mounts()
	if err != nil {
		return
	}
	own, err := ownCgroups()
	if err != nil {
		return
	}
	for ctrl := range controllerFeatures {
		if mnt, ok := mounts[ctrl]; ok {
			sweepCgroups(filepath.Join(mnt, own[ctrl]))
		}
	}
}

// sweepCgroups removes the cgroups left in parent by plugin processes that died without
// cleaning up (their pid is in the name and no longer runs), after killing what is still
// in them: processes the session's code started, which outlive the plugin where no PID
// namespace takes them down with it (only the session's processes can be in its cgroup).
func sweepCgroups(parent string) {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), cgroupPrefix) {
			continue
		}
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(e.Name(), cgroupPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if !processAlive(pid) {
			dir := filepath.Join(parent, e.Name())
			stale := &cgroups{dirs: map[string]string{"stale": dir}}
			stale.killAll(time.Second)
			_ = stale.remove()
		}
	}
}

// processAlive reports whether pid runs: it exists and is not a zombie (a plugin killed
// with its host stays one until whatever adopted it reaps it).
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// The state follows the command name, which is in parentheses and may hold any byte.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// cgroupV1Mounts maps each cgroup v1 controller to its mount point, from mountinfo.
func cgroupV1Mounts() (map[string]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ... - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || qf[0] != "cgroup" {
			continue
		}
		for _, opt := range strings.Split(qf[2], ",") {
			if _, ok := controllerFeatures[opt]; ok {
				if _, dup := out[opt]; !dup {
					out[opt] = pf[4]
				}
			}
		}
	}
	return out, sc.Err()
}

// ownCgroups returns the plugin's own cgroup path per v1 controller.
func ownCgroups() (map[string]string, error) { return cgroupsOf(os.Getpid()) }

// cgroupsOf returns a process's cgroup path per v1 controller, from /proc/<pid>/cgroup.
func cgroupsOf(pid int) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out, nil
}

// oomKills reads the oom_kill count of a memory cgroup, 0 when unknown.
func oomKills(dir string) int64 {
	b, err := os.ReadFile(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

func writeCgroup(dir, file, value string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		return fmt.Errorf("write %s to %s: %w", value, filepath.Join(dir, file), err)
	}
	return nil
}

func readCgroupInt(dir, file string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return -1, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// formatBytes renders a size with a binary unit, e.g. "512 MiB" or "1.5 GiB".
func formatBytes(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %s", int64(v), units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
