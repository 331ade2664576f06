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
