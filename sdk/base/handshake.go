package base

import (
	"github.com/hashicorp/go-plugin"
)

// ProtocolVersion is the current plugin protocol version (proto/limit/v1).
const ProtocolVersion = 1

// Plugin kinds.
const (
	KindStorage    = "storage"
	KindRunner     = "runner"
	KindGovernance = "governance"
)

// Kinds lists every plugin kind the host knows.
var Kinds = []string{KindStorage, KindRunner, KindGovernance}

// Handshake is the handshake every LIMIT plugin and the host agree on. The cookie is not a
// security measure: it keeps a plugin binary from being run by hand by mistake.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "LIMIT_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "7f3b1c9a-limit-host-plugin-v1",
}

// Message size limits of the plugin gRPC connection. Storage values may be up to
// 16 MiB (storage.MaxValueSize) and a batch up to 48 MiB, so messages are allowed up to
// 64 MiB; runner output never comes near it because it is streamed in 64 KiB chunks.
const (
	MaxMessageSize = 64 << 20
)
