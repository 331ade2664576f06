package daemon

import (
	"slices"

	"github.com/hashicorp/go-hclog"
)

// logSharedStorage says, at start, which other hosts share the storage (keys, by node id,
// as each recorded its provenance key: trace.Store.KeyNodes) and whether they sign with
// this host's key (fingerprint fp): a host with another key cannot verify their traces,
// nor they its own, so each trace is appended to, flagged, exported and merged through the
// host that signed it.
func logSharedStorage(logger hclog.Logger, keys map[string]string, node, fp string) {
	var same, other []string
	for n, k := range keys {
		switch {
		case n == node:
		case k == fp:
			same = append(same, n)
		default:
			other = append(other, n)
		}
	}
	slices.Sort(same)
	slices.Sort(other)
	if len(same) > 0 {
		logger.Info("other hosts share this storage and sign with this host's provenance key: each verifies the others' traces", "node", node, "nodes", same)
	}
	if len(other) > 0 {
		otherKeys := make([]string, len(other))
		for i, n := range other {
			otherKeys[i] = n + "=" + keys[n]
		}
		logger.Info("other hosts share this storage and sign with other provenance keys: this host cannot verify their traces (nor they its own); append to, flag, export and merge each trace through the host that signed it",
			"node", node, "nodes", other, "keys", otherKeys)
	}
}
