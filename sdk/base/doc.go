// Package base holds what every LIMIT plugin shares whatever its kind: the handshake,
// the plugin's identity (Info), its configuration schema, configuration diagnostics,
// the gRPC shims of the base service, and the helpers that serve a plugin or launch one.
//
// A plugin author implements the kind's interface (sdk/storage, sdk/runner,
// sdk/governance), which embeds Plugin, and calls that package's Serve from main.
package base
