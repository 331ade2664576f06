package base

import (
	"time"

	"github.com/hashicorp/go-plugin"
)

// StopGrace is how long a plugin may take to exit after its connection is closed before
// its process group is killed, and how long Stop then waits for go-plugin to notice.
const StopGrace = 3 * time.Second

// Stop stops a plugin started by NewClient: politely when graceful (go-plugin closes the
// connection and asks the process to exit, and Stop waits up to StopGrace for that;
// go-plugin itself kills the process, not its children, if it has not exited within
// 2 s), then by SIGKILL to the plugin's process group (KillGroup), which also ends
// children that hold its stdout or stderr open: Client.Kill waits for those pipes to
// close, so without it a plugin whose child outlives it would hang the caller. The
// processes below the plugin when Stop began are killed too, those that left its process
// group (setsid) included. pid 0 (the process never started) kills no group. Stop returns within about twice
// StopGrace whatever the plugin does.
//
// It reports whether go-plugin is done with the process: then the process has been
// waited for, and the ProcessState of its command (NewClientCmd) may be read.
func Stop(c *plugin.Client, pid int, graceful bool) bool {
	// The processes the plugin started, taken now: one that left its process group
	// (setsid) is found only while the plugin lives.
	tree := descendants(pid)
	if !graceful {
		_ = KillGroup(pid)
		killProcs(tree)
	}
	done := make(chan struct{})
	go func() {
		c.Kill()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(StopGrace):
	}
	// Also after a clean exit: children the plugin left running go with it, those that
	// left its group too.
	_ = KillGroup(pid)
	killProcs(tree)
	// A process that left the group may still hold a pipe: do not wait for it forever.
	select {
	case <-done:
		return true
	case <-time.After(StopGrace):
		return false
	}
}
