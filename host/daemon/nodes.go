package daemon

import (
	"slices"

	"github.com/hashicorp/go-hclog"
)

// logSharedStorage says, at start, which other hosts share the storage (keys, by node id,
// as each recorded its provenance key: trace.Store.KeyNodes) and whether they sign with
// this host's key (fingerprint fp), with a key it trusts (trusted, by fingerprint:
// host.trusted_keys), or with another: a host with such another key cannot have its traces
// verified here, so each of them is appended to, flagged, exported and merged through the
// host that signed it (or a host that trusts its key).
func logSharedStorage(logger hclog.Logger, keys map[string]string, node, fp string, trusted map[string]bool) {
	var same, trusting, other []string
	for n, k := range keys {
		switch {
		case n == node:
		case k == fp:
			same = append(same, n)
		case trusted[k]:
			trusting = append(trusting, n)
		default:
			other = append(other, n)
		}
	}
	slices.Sort(same)
	slices.Sort(trusting)
	slices.Sort(other)
	withKeys := func(nodes []string) []string {
		out := make([]string, len(nodes))
		for i, n := range nodes {
			out[i] = n + "=" + keys[n]
		}
		return out
	}
	if len(same) > 0 {
		logger.Info("other hosts share this storage and sign with this host's provenance key: each verifies the others' traces", "node", node, "nodes", same)
	}
	if len(trusting) > 0 {
		logger.Info("other hosts share this storage and sign with provenance keys this host trusts (host.trusted_keys): it verifies and extends their traces", "node", node, "nodes", trusting, "keys", withKeys(trusting))
	}
	if len(other) > 0 {
		logger.Info("other hosts share this storage and sign with other provenance keys: this host cannot verify their traces; append to, flag, export and merge each trace through the host that signed it, or add its key to host.trusted_keys",
			"node", node, "nodes", other, "keys", withKeys(other))
	}
}
