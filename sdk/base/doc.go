// Package base holds what every LIMIT plugin shares whatever its kind: the handshake,
// the plugin's identity (Info), its configuration schema, configuration diagnostics,
// the gRPC shims of the base service, and the helpers that serve a plugin or launch one.
//
// A plugin author implements the kind's interface (sdk/storage, sdk/runner,
// sdk/governance), which embeds Plugin, and calls that package's Serve from main.
// Info.Kind must be the kind of the HCL block that declares the plugin; ConfigSchema is
// what the host checks the block's config against (an unknown attribute, a wrong type or
// a missing required one is reported at its file and line) before Configure sees it as
// JSON, which DecodeConfig reads into a struct.
//
// A plugin must write nothing to stdout before Serve runs: the host reads the go-plugin
// handshake there, and a stray line fails the start. It logs with NewPluginLogger; what it
// prints to stdout or stderr once it serves reaches the host's log as a warning. Serve
// recovers a panic in any call into the plugin, answers that call with an error and logs
// the panic's stack, so the process lives on.
//
// Working examples of each kind, with their tests: examples/storage-plugin,
// examples/runner-plugin, examples/governance-rule.
package base
