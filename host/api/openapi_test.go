package api

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/config"
	"github.com/limitgraph/limit/host/execution"
	"github.com/limitgraph/limit/host/session"
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

// TestOpenAPIProblemsAndParameters: the document lists the problems each operation
// answers (not only 401), the problem's extension members, typed query parameters, what an
// FGW request needs besides c1 and c2, and which routes have no unversioned path.
func TestOpenAPIProblemsAndParameters(t *testing.T) {
	s := rdServer(t, config.RD{Alpha: 0.5})
	b, err := json.Marshal(s.doc)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Info  struct{ Description string } `json:"info"`
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name   string         `json:"name"`
				Schema map[string]any `json:"schema"`
			} `json:"parameters"`
			Responses map[string]any `json:"responses"`
		} `json:"paths"`
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		method, path string
		codes        []string
	}{
		{"post", "/v1/sessions/{id}/executions", []string{"400", "403", "404", "409", "413", "415", "422", "429", "503"}},
		{"post", "/v1/traces/{id}/merge", []string{"404", "409"}},
		{"post", "/v1/rd/knee", []string{"400", "408", "413", "415", "422"}},
		{"get", "/v1/rd/knee", []string{"400", "404", "422"}},
		{"get", "/v1/sessions", []string{"400"}},
		{"get", "/v1/governance/stats", []string{"400", "404"}},
		{"get", "/v1/health", []string{"503"}},
	} {
		op := doc.Paths[c.path][c.method]
		for _, code := range c.codes {
			if op.Responses[code] == nil {
				t.Errorf("%s %s documents no %s", c.method, c.path, code)
			}
		}
	}
	params := map[string]map[string]any{}
	for _, p := range doc.Paths["/v1/sessions"]["get"].Parameters {
		params[p.Name] = p.Schema
	}
	if p := params["per_page"]; p["type"] != "integer" || p["minimum"] != 1.0 || p["maximum"] != 1000.0 {
		t.Errorf("per_page: %v", p)
	}
	if p := params["include_deleted"]; p["type"] != "boolean" {
		t.Errorf("include_deleted: %v", p)
	}
	props, _ := doc.Components.Schemas["Problem"]["properties"].(map[string]any)
	for _, name := range []string{"reasons", "policy", "trace_id", "flags", "flag_names", "field",
		"record_pending", "record_lost", "execution_status", "stdout", "stderr", "output", "exit_code"} {
		if props[name] == nil {
			t.Errorf("Problem has no %s", name)
		}
	}
	if _, ok := doc.Components.Schemas["FgwRequest"]["oneOf"]; !ok {
		t.Errorf("FgwRequest does not say it needs m or features_a and features_b: %v", doc.Components.Schemas["FgwRequest"])
	}
	if d := doc.Info.Description; !strings.Contains(d, "Every route but /v1/openapi.json and /v1/provenance/key is also served without the /v1 prefix") {
		t.Errorf("info.description: %s", d)
	}
}

// TestOpenAPIScraperRefusals: with tokens, every operation but the metrics and the health
// checks lists the 403 a metrics scraper's token gets, beside an operator-only one's.
func TestOpenAPIScraperRefusals(t *testing.T) {
	doc := openAPI("1", New(Options{Sessions: new(session.Manager), Engine: &execution.Engine{}}).routes, true)
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct {
				Description string `json:"description"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	for path, ops := range d.Paths {
		for method, op := range ops {
			why := op.Responses["403"].Description
			switch scraper := strings.Contains(why, ":metrics"); {
			case path == "/v1/metrics" || strings.HasPrefix(path, "/v1/health"):
				if scraper {
					t.Errorf("%s %s lists the scraper's 403: %q", method, path, why)
				}
			case !scraper:
				t.Errorf("%s %s does not list the scraper's 403: %q", method, path, why)
			}
		}
	}
	operatorOnly := 0
	for path, ops := range d.Paths {
		for method, op := range ops {
			if why := op.Responses["403"].Description; strings.Contains(why, "operator's token") && path != "/v1/metrics" {
				operatorOnly++
				if !strings.Contains(why, ":metrics") {
					t.Errorf("%s %s: %q", method, path, why)
				}
			}
		}
	}
	if operatorOnly == 0 {
		t.Error("no operator-only route kept its own 403 reason beside the scraper's")
	}
}
