package base

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDecodeConfig: what DecodeConfig says of each kind of bad config, in the user's terms
// (attribute names, JSON kinds), never a dump of the Go type it decodes into.
func TestDecodeConfig(t *testing.T) {
	type config struct {
		Prefix string `json:"prefix"`
		Limits struct {
			Max int `json:"max"`
		} `json:"limits"`
	}
	for _, tc := range []struct {
		name, raw string
		want      string // in the diagnostics; "" for none
	}{
		{"empty", ``, ""},
		{"object", `{"prefix": "p", "limits": {"max": 3}}`, ""},
		{"null", `null`, ""},
		{"array", `[1, 2]`, "config must be a JSON object, got an array"},
		{"string", `"prefix"`, "config must be a JSON object, got a string"},
		{"number", `42`, "config must be a JSON object, got a number"},
		{"bool", `true`, "config must be a JSON object, got a boolean"},
		{"unknown attribute", `{"prefx": "p"}`, `unsupported attribute "prefx"`},
		{"wrong type", `{"prefix": 3}`, "must be of type string, got number"},
		{"data after", `{} {}`, "data after the JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c config
			ds := DecodeConfig(json.RawMessage(tc.raw), &c)
			if tc.want == "" {
				if ds.HasErrors() {
					t.Fatalf("DecodeConfig(%s) = %v, want no diagnostics", tc.raw, ds.Err())
				}
				return
			}
			if !ds.HasErrors() {
				t.Fatalf("DecodeConfig(%s): no diagnostics, want %q", tc.raw, tc.want)
			}
			got := ds.Err().Error()
			if !strings.Contains(got, tc.want) || strings.Contains(got, "struct {") || strings.Contains(got, "Go value") {
				t.Errorf("DecodeConfig(%s) = %q, want it to say %q and name no Go type", tc.raw, got, tc.want)
			}
		})
	}
}

// TestCheckInfo: the host refuses an Info without a name or a version, or whose protocol
// versions leave out the host's, saying what to do; an empty list means ProtocolVersion.
func TestCheckInfo(t *testing.T) {
	for _, tc := range []struct {
		info Info
		want []string // substrings of the error; none: accepted
	}{
		{Info{Name: "x", Version: "1.0.0"}, nil},
		{Info{Name: "x", Version: "1.0.0", ProtocolVersions: []uint32{ProtocolVersion, 99}}, nil},
		{Info{Name: "x", Version: "1.0.0", ProtocolVersions: []uint32{99, 100}}, []string{"protocol version 99, 100 and this host speaks 1", "rebuild the plugin against the LIMIT SDK"}},
		{Info{Name: " ", Version: "1.0.0"}, []string{"empty name"}},
		{Info{Name: "x"}, []string{"empty version"}},
	} {
		err := CheckInfo(tc.info)
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%+v: %v", tc.info, err)
			}
			continue
		}
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %v, want it to say %q", tc.info, err, w)
			}
		}
	}
}
