package sdktest

import (
	"strings"
	"testing"

	"github.com/limitgraph/limit/sdk/base"
)

func TestApplySchema(t *testing.T) {
	schema := base.Schema{Attributes: []base.Attribute{
		{Name: "severity", Type: "number", Default: 5},
		{Name: "words", Type: "list(string)"},
		{Name: "fallback", Type: "object({base_url = string})"},
		{Name: "extra", Type: "any"},
	}}
	for _, tc := range []struct {
		name, config, want, wantErr string
	}{
		{"defaults filled in", `{}`, `{"severity":5}`, ""},
		{"empty config", ``, `{"severity":5}`, ""},
		{"given value kept", `{"severity": 8, "words": ["a"]}`, `{"severity":8,"words":["a"]}`, ""},
		{"value converted to its type", `{"severity": "8"}`, `{"severity":8}`, ""},
		{"null takes the default", `{"severity": null}`, `{"severity":5}`, ""},
		{"any keeps its value", `{"extra": {"a": [1]}}`, `{"extra":{"a":[1]},"severity":5}`, ""},
		{"unknown attribute", `{"severty": 1}`, "", `severty: unsupported attribute "severty"; did you mean "severity"?`},
		{"wrong type", `{"words": 3}`, "", "words: must be of type list(string)"},
		{"attribute unknown inside an object", `{"fallback": {"base_url": "x", "base_ur1": "y"}}`, "", `an attribute named "base_ur1" is not expected in fallback`},
		{"not an object", `[1]`, "", "config must be a JSON object"},
		{"not JSON", `{`, "", "config is not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ds := ApplySchema(schema, []byte(tc.config))
			if tc.wantErr != "" {
				if !ds.HasErrors() || !strings.Contains(ds.Err().Error(), tc.wantErr) {
					t.Fatalf("ApplySchema(%s): %v, want an error containing %q", tc.config, ds, tc.wantErr)
				}
				return
			}
			if ds.HasErrors() || string(got) != tc.want {
				t.Fatalf("ApplySchema(%s) = %s, %v; want %s", tc.config, got, ds, tc.want)
			}
		})
	}
}

func TestApplySchemaRefusesBadSchemas(t *testing.T) {
	for _, tc := range []struct {
		name    string
		attrs   []base.Attribute
		wantErr string
	}{
		{"type not a constraint", []base.Attribute{{Name: "a", Type: "strin g("}}, `attribute "a" has type "strin g("`},
		{"name not an identifier", []base.Attribute{{Name: "a b", Type: "string"}}, `attribute name "a b" is not a valid HCL identifier`},
		{"declared twice", []base.Attribute{{Name: "a", Type: "string"}, {Name: "a", Type: "number"}}, `attribute "a" is declared twice`},
		{"default of the wrong type", []base.Attribute{{Name: "a", Type: "number", Default: "many"}}, `the default of attribute "a" does not fit its type "number"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ds := ApplySchema(base.Schema{Attributes: tc.attrs}, []byte(`{}`))
			if !ds.HasErrors() || !strings.Contains(ds.Err().Error(), "invalid config schema (a bug in the plugin): "+tc.wantErr) {
				t.Fatalf("ApplySchema: %v, want an error containing %q", ds, tc.wantErr)
			}
		})
	}
}
