// Command limit-runner-python is the LIMIT host's Python runner plugin. The host starts one
// process per session; the process keeps one long-lived Python interpreter (the worker)
// for the session, so state carries over between executions, inside a sandbox it sets up:
//
//   - new pid, mount, IPC and UTS namespaces, and a network namespace with only loopback
//     when the session does not allow the network;
//   - cgroup v1 memory, pids and cpu limits where the controllers exist, rlimits otherwise;
//   - a uid of the session's own when the plugin runs as root (so RLIMIT_NPROC holds);
//     without root a session is refused unless allow_weak_isolation is set;
//   - Landlock: system paths read-only, the work dir read-write, nothing else;
//   - a seccomp filter denying what Python code never needs (ptrace, mount, bpf, ...).
//
// The plugin binary re-executes itself as the sandbox's first process ("init"), which
// applies what must be applied from inside and starts the interpreter. Health reports
// each isolation feature as checked on the running worker. A configured process that
// waits for its session (the host keeps a pool of them) spawns that init and compiles the
// worker's code ahead, so neither is part of the session's cold start.
//
// Build it as `go build -o limit-runner-python ./plugins/runner-python`; the host starts
// it, it is not meant to be run by hand.
package main

import (
	"os"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/runner"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == initArg {
		sandboxInit()
		return
	}
	log := base.NewPluginLogger("runner.python")
	r := newRunner(log)
	// When the host is gone (a SIGTERM then, or the orphan check) clean up like a graceful
	// stop: no worker, cgroup or uid-owned file is left behind. A SIGTERM while the host
	// lives (systemd stopping limitd signals its whole unit) is ignored: the host still
	// needs the session to finish its executions, and stops the process itself.
	base.OnHostGone(func() { _ = r.shutdown(false) })
	runner.Serve(r)
	// The host closed the connection: the session may go on in a fresh process later, so
	// its work dir stays (handed back to the plugin's uid).
	_ = r.shutdown(false)
}
