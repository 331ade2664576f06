// Package version holds the host's version, set at build time with
// -ldflags "-X github.com/limitgraph/limit/host/version.Version=...".
package version

// Version of LIMIT host.
var Version = "0.1.0-dev"
