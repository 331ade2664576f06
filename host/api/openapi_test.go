package api

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/limitgraph/limit/host/config"
)

// TestOpenAPIRequired: a request body's schema requires only what the server requires
// (a session needs nothing; a flag needs its trace, flag and severity); a response's
// lists what it always carries.
func TestOpenAPIRequired(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5})
	b, err := json.Marshal(s.doc)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Required []string `json:"required"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	schemas := doc.Components.Schemas
	for name, want := range map[string][]string{
		"SessionCreateRequest": nil,
		"FlagRequest":          {"flag", "severity", "trace_id"},
		"ExecutionRequest":     {"runner"},
		"FgwRequest":           {"c1", "c2"},
		"SessionLimitsInput":   nil,
	} {
		got, ok := schemas[name]
		if !ok {
			keys := make([]string, 0, len(schemas))
			for k := range schemas {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			t.Fatalf("no schema %s among %v", name, keys)
		}
		if !slices.Equal(got.Required, want) {
			t.Errorf("%s requires %v, want %v", name, got.Required, want)
		}
	}
	if r := schemas["Session"].Required; !slices.Contains(r, "id") {
		t.Errorf("the session response does not list id as always present: %v", r)
	}
}

// TestOpenAPIFlagDetails: the document lists a flag's optional stage, score and location
// (none of them required), the location's fields, and the location a flag by hand takes.
func TestOpenAPIFlagDetails(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5})
	b, err := json.Marshal(s.doc)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]map[string]any `json:"properties"`
				Required   []string                  `json:"required"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	schemas := doc.Components.Schemas
	flag := schemas["TraceFlag"]
	for name, want := range map[string]any{"stage": "string", "score": "number", "location": nil} {
		p, ok := flag.Properties[name]
		if !ok || want != nil && p["type"] != want || want == nil && p["$ref"] != "#/components/schemas/TraceLocation" {
			t.Errorf("TraceFlag.%s = %v (present %v)", name, p, ok)
		}
		if slices.Contains(flag.Required, name) {
			t.Errorf("TraceFlag requires %s", name)
		}
	}
	loc := schemas["TraceLocation"]
	for _, name := range []string{"line", "column", "start", "end"} {
		if loc.Properties[name]["type"] != "integer" {
			t.Errorf("TraceLocation.%s = %v", name, loc.Properties[name])
		}
	}
	if p := schemas["FlagRequest"].Properties["location"]; p["$ref"] != "#/components/schemas/TraceLocationInput" {
		t.Errorf("FlagRequest.location = %v", p)
	}
}
