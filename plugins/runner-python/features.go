package main

import (
	"slices"

	"github.com/limitgraph/limit/sdk/runner"
)

// Isolation feature names, as Health reports them and disable_isolation and
// require_isolation name them.
const (
	featPIDNS    = "pid_ns"
	featMountNS  = "mount_ns"
	featIPCNS    = "ipc_ns"
	featUTSNS    = "uts_ns"
	featNetNS    = "net_ns"
	featCgMemory = "cgroup_memory"
	featCgPids   = "cgroup_pids"
	featCgCPU    = "cgroup_cpu"
	featRlimits  = "rlimits"
	featUID      = "uid"
	featLandlock = "landlock"
	featSeccomp  = "seccomp"
	featDisk     = "disk_limit"
)

// featureNames lists every isolation feature in report order.
var featureNames = []string{
	featPIDNS, featMountNS, featIPCNS, featUTSNS, featNetNS,
	featCgMemory, featCgPids, featCgCPU, featRlimits, featUID, featLandlock, featSeccomp, featDisk,
}

// report collects what is known about each feature: a feature is enforced only when
// every check of it passed, and its detail says what was checked or what failed.
type report struct {
	m map[string]*runner.IsolationFeature
}

func newReport() *report {
	return &report{m: map[string]*runner.IsolationFeature{}}
}

// set records a feature's state, replacing what was known.
func (r *report) set(name string, enforced bool, detail string) {
	r.m[name] = &runner.IsolationFeature{Name: name, Enforced: enforced, Detail: detail}
}

// fail marks a feature as not enforced, keeping the first reason given.
func (r *report) fail(name, detail string) {
	f, ok := r.m[name]
	if !ok || f.Enforced {
		r.set(name, false, detail)
	}
}

// get returns the feature's entry, or nil.
func (r *report) get(name string) *runner.IsolationFeature { return r.m[name] }

// enforced reports whether the feature is recorded as enforced.
func (r *report) enforced(name string) bool {
	f := r.m[name]
	return f != nil && f.Enforced
}

// list returns every feature in report order; an unrecorded one is not enforced.
func (r *report) list() []runner.IsolationFeature {
	out := make([]runner.IsolationFeature, 0, len(featureNames))
	for _, n := range featureNames {
		if f := r.m[n]; f != nil {
			out = append(out, *f)
		} else {
			out = append(out, runner.IsolationFeature{Name: n, Detail: "not checked"})
		}
	}
	return out
}

// entries returns the recorded features only, in report order.
func (r *report) entries() []runner.IsolationFeature {
	var out []runner.IsolationFeature
	for _, n := range featureNames {
		if f := r.m[n]; f != nil {
			out = append(out, *f)
		}
	}
	return out
}

// merge copies the entries of o into r, o's failures winning over r's successes.
func (r *report) merge(o []runner.IsolationFeature) {
	for _, f := range o {
		if !slices.Contains(featureNames, f.Name) {
			continue
		}
		if f.Enforced {
			if _, ok := r.m[f.Name]; !ok {
				r.set(f.Name, true, f.Detail)
			}
		} else {
			r.fail(f.Name, f.Detail)
		}
	}
}

// baselineNames are the isolation features that keep the code from the host and the API,
// required of every session unless allow_weak_isolation is set:
//   - uid: without it the code runs as the plugin's own user, so it can read and write
//     whatever the host can (data_dir, the token file, the database), signal the plugins,
//     and call the API as the host's own user, whose requests the API does not refuse;
//   - net_ns (for a session that does not allow the network): without it the code has the
//     host's network, the API's loopback address included;
//   - mount_ns: it hides the host's /tmp and /run, where the plugins' and other services'
//     Unix sockets are (Landlock does not stop a connect to one), and gives pid_ns its
//     /proc;
//   - pid_ns: without it the code sees every process of the host and their command lines;
//   - landlock and seccomp, where the kernel has them: reads outside the system paths and
//     the work dir, and the system calls an escape from the rest would start with (new
//     user namespaces, ptrace, io_uring).
//
// The resource limits (cgroups, rlimits, disk_limit) and the IPC and UTS namespaces keep a
// session from starving or confusing others, not from reaching the host: they are reported,
// not required.
var baselineNames = []string{featUID, featMountNS, featPIDNS, featNetNS, featLandlock, featSeccomp}

// baselineFeatures returns the baseline a session must have on this machine: net_ns only
// when it does not allow the network, Landlock and seccomp only when the kernel has them.
func baselineFeatures(allowNetwork bool) []string {
	out := []string{featUID, featMountNS, featPIDNS}
	if !allowNetwork {
		out = append(out, featNetNS)
	}
	if landlockABI() > 0 {
		out = append(out, featLandlock)
	}
	if _, err := procStatusField("/proc/self/status", "Seccomp"); err == nil {
		out = append(out, featSeccomp)
	}
	return out
}

// weakIsolationFix says how to get the baseline, for errors and Health.
const weakIsolationFix = "run limitd as root (the sandbox needs it: see the README's Privileges), or set allow_weak_isolation = true in the runner's config block to run code without them"
