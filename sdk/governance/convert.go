package governance

import (
	limitv1 "github.com/limitgraph/limit/proto/limit/v1"
)

// DescriptionToProto converts a RuleDescription to its protocol message.
func DescriptionToProto(d RuleDescription) *limitv1.RuleDescription {
	m := &limitv1.RuleDescription{Id: d.ID, Flags: d.Flags, Description: d.Description, ContentTypes: d.ContentTypes, Runners: d.Runners}
	for _, s := range d.Stages {
		m.Stages = append(m.Stages, limitv1.Stage(s))
	}
	return m
}

// DescriptionFromProto converts a protocol message to a RuleDescription.
func DescriptionFromProto(m *limitv1.RuleDescription) RuleDescription {
	d := RuleDescription{ID: m.GetId(), Flags: m.GetFlags(), Description: m.GetDescription(), ContentTypes: m.GetContentTypes(), Runners: m.GetRunners()}
	for _, s := range m.GetStages() {
		d.Stages = append(d.Stages, Stage(s))
	}
	return d
}

// RequestToProto converts an EvaluateRequest to its protocol message.
func RequestToProto(r EvaluateRequest) *limitv1.EvaluateRequest {
	return &limitv1.EvaluateRequest{
		Stage: limitv1.Stage(r.Stage), SessionId: r.SessionID, TraceId: r.TraceID, Runner: r.Runner,
		ContentType: r.ContentType, Content: r.Content, Metadata: r.Metadata, Owner: r.Owner,
	}
}

// RequestFromProto converts a protocol message to an EvaluateRequest.
func RequestFromProto(m *limitv1.EvaluateRequest) EvaluateRequest {
	return EvaluateRequest{
		Stage: Stage(m.GetStage()), SessionID: m.GetSessionId(), TraceID: m.GetTraceId(), Runner: m.GetRunner(),
		ContentType: m.GetContentType(), Content: m.GetContent(), Metadata: m.GetMetadata(), Owner: m.GetOwner(),
	}
}

// FindingToProto converts a Finding to its protocol message.
func FindingToProto(f Finding) *limitv1.Finding {
	m := &limitv1.Finding{Flag: f.Flag, Severity: int32(f.Severity), Score: f.Score, Reason: f.Reason, RuleId: f.RuleID}
	if f.Location != nil {
		m.Location = &limitv1.Location{
			Line: uint32(f.Location.Line), Column: uint32(f.Location.Column),
			Start: uint64(f.Location.Start), End: uint64(f.Location.End),
		}
	}
	return m
}

// FindingFromProto converts a protocol message to a Finding.
func FindingFromProto(m *limitv1.Finding) Finding {
	f := Finding{Flag: m.GetFlag(), Severity: int(m.GetSeverity()), Score: m.GetScore(), Reason: m.GetReason(), RuleID: m.GetRuleId()}
	if l := m.GetLocation(); l != nil {
		f.Location = &Location{Line: int(l.GetLine()), Column: int(l.GetColumn()), Start: int(l.GetStart()), End: int(l.GetEnd())}
	}
	return f
}
