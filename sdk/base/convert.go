package base

import (
	"encoding/json"
	"fmt"

	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
)

// InfoToProto converts an Info to its protocol message.
func InfoToProto(i Info) *limitv1.InfoResponse {
	pv := i.ProtocolVersions
	if len(pv) == 0 {
		pv = []uint32{ProtocolVersion}
	}
	return &limitv1.InfoResponse{
		Name: i.Name, Kind: i.Kind, Version: i.Version, ProtocolVersions: pv,
		Capabilities: i.Capabilities, Description: i.Description,
	}
}

// InfoFromProto converts a protocol message to an Info.
func InfoFromProto(m *limitv1.InfoResponse) Info {
	return Info{
		Name: m.GetName(), Kind: m.GetKind(), Version: m.GetVersion(),
		ProtocolVersions: m.GetProtocolVersions(), Capabilities: m.GetCapabilities(),
		Description: m.GetDescription(),
	}
}

// SchemaToProto converts a Schema to its protocol message.
func SchemaToProto(s Schema) (*limitv1.ConfigSchemaResponse, error) {
	out := &limitv1.ConfigSchemaResponse{}
	for _, a := range s.Attributes {
		var def []byte
		if a.Default != nil {
			b, err := json.Marshal(a.Default)
			if err != nil {
				return nil, fmt.Errorf("default of attribute %q: %w", a.Name, err)
			}
			def = b
		}
		out.Attributes = append(out.Attributes, &limitv1.SchemaAttribute{
			Name: a.Name, Type: a.Type, Required: a.Required, Description: a.Description,
			DefaultJson: def, Sensitive: a.Sensitive,
		})
	}
	return out, nil
}

// SchemaFromProto converts a protocol message to a Schema. Defaults stay raw JSON.
func SchemaFromProto(m *limitv1.ConfigSchemaResponse) Schema {
	var s Schema
	for _, a := range m.GetAttributes() {
		attr := Attribute{
			Name: a.GetName(), Type: a.GetType(), Required: a.GetRequired(),
			Description: a.GetDescription(), Sensitive: a.GetSensitive(),
		}
		if len(a.GetDefaultJson()) > 0 {
			attr.Default = json.RawMessage(a.GetDefaultJson())
		}
		s.Attributes = append(s.Attributes, attr)
	}
	return s
}

// DiagnosticsToProto converts diagnostics to protocol messages.
func DiagnosticsToProto(ds Diagnostics) []*limitv1.Diagnostic {
	out := make([]*limitv1.Diagnostic, 0, len(ds))
	for _, d := range ds {
		sev := limitv1.Diagnostic_SEVERITY_ERROR
		if d.Severity == SeverityWarning {
			sev = limitv1.Diagnostic_SEVERITY_WARNING
		}
		out = append(out, &limitv1.Diagnostic{Severity: sev, Summary: d.Summary, Detail: d.Detail, AttributePath: d.Path})
	}
	return out
}

// DiagnosticsFromProto converts protocol messages to diagnostics. An unspecified severity
// counts as an error, so a careless plugin cannot turn a problem into a pass.
func DiagnosticsFromProto(ms []*limitv1.Diagnostic) Diagnostics {
	var out Diagnostics
	for _, m := range ms {
		sev := SeverityError
		if m.GetSeverity() == limitv1.Diagnostic_SEVERITY_WARNING {
			sev = SeverityWarning
		}
		out = append(out, Diagnostic{Severity: sev, Summary: m.GetSummary(), Detail: m.GetDetail(), Path: m.GetAttributePath()})
	}
	return out
}
