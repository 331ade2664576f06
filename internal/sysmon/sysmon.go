// Package sysmon keeps the Go runtime's system monitor (sysmon) of a storage plugin out of
// its deep sleep, which the plugin paid for at every group commit.
//
// Sysmon sleeps deeply whenever every P of the process is idle; the next system call wakes
// it and sets it polling every 20 µs again, for at least 1 ms before it backs off. A storage
// plugin behind a merging host idles for a few tens of µs between two group commits (while
// the host answers the last round's writers and gathers the next), so every commit paid a
// wake-up of its sysmon and then its polling on the commit's own path: with two vCPUs, 16
// durable writers through the bolt plugin made 15 context switches a commit, against 10
// with the plugin kept out of deep sleep, and 10-20 % fewer writes a second (BENCHMARKS.md,
// "sysmon"). A positive schedtrace is the runtime's only switch that keeps sysmon from deep
// sleep, and it is read once, at start: the setting has to be in GODEBUG when the process
// starts, so the host puts it in the plugin's environment (base.NewClientCmd). At 2^31-1
// ms, the scheduler line schedtrace also asks for comes at most once every 24.8 days
// (go-plugin logs a plugin's such lines at debug level). The price: an idle plugin's
// sysmon wakes every 10 ms (an idle bolt plugin: 126 context switches a second against
// 53). The host process itself was measured with the setting too, and gained nothing
// clear on the same benchmark, so it runs without.
package sysmon

import (
	"slices"
	"strings"
)

// Setting is the GODEBUG setting that keeps sysmon from deep sleep.
const Setting = "schedtrace=2147483647"

// WithSetting returns env with settings placed before any GODEBUG it sets (the runtime
// takes the last value of a key, so the ones env names win).
func WithSetting(env []string, settings string) []string {
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			out := slices.Clone(env)
			out[i] = "GODEBUG=" + settings
			if v != "" {
				out[i] += "," + v
			}
			return out
		}
	}
	return append(slices.Clip(env), "GODEBUG="+settings)
}
