package client_test

import (
	"context"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/host/rd"
	"github.com/limitgraph/limit/host/session"
	"github.com/limitgraph/limit/host/trace"
	"github.com/limitgraph/limit/sdk/client"
)

// jsonFields lists the JSON names of t's fields, those of embedded structs included.
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported():
		case f.Anonymous && name == "":
			out = append(out, jsonFields(f.Type)...)
		case name == "":
			out = append(out, f.Name)
		default:
			out = append(out, name)
		}
	}
	return out
}

// TestSDKTypesMirrorTheAPI: every field the host's records carry in the API's answers
// has its field in the SDK's type, so that SDK users (and limitctl -o json, which
// re-encodes them) see all of it.
func TestSDKTypesMirrorTheAPI(t *testing.T) {
	for _, c := range []struct {
		host, sdk any
	}{
		{session.Session{}, client.Session{}},
		{session.Limits{}, client.Limits{}},
		{trace.Record{}, client.Trace{}},
		{trace.Flag{}, client.Flag{}},
		{trace.Location{}, client.Location{}},
		{trace.Entry{}, client.Entry{}},
		{governance.Policy{}, client.Policy{}},
		{governance.Stats{}, client.Stats{}},
		{rd.FGWResult{}, client.FGWResult{}},
		{rd.Point{}, client.RDPoint{}},
		{rd.RDKnee{}, client.RDKnee{}},
		{rd.Knee{}, client.Knee{}},
		{rd.RDCurve{}, client.Curve{}},
		{rd.RDPoint{}, client.CurvePoint{}},
	} {
		ht, st := reflect.TypeOf(c.host), reflect.TypeOf(c.sdk)
		have := map[string]bool{}
		for _, n := range jsonFields(st) {
			have[n] = true
		}
		for _, n := range jsonFields(ht) {
			if !have[n] {
				t.Errorf("%v has JSON field %q that %v lacks", ht, n, st)
			}
		}
	}
}

// TestSDKRequestsMirrorTheAPI: the SDK's request bodies have exactly the fields of the
// API's, as its OpenAPI document gives them: none the host would refuse as unknown, none
// it takes that an SDK user cannot send.
func TestSDKRequestsMirrorTheAPI(t *testing.T) {
	doc, err := apiServer(t).OpenAPI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]any `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		method, path string
		sdk          any
	}{
		{"post", "/v1/rd/fgw", client.FGWRequest{}},
		{"post", "/v1/rd/knee", client.KneeRequest{}},
		{"post", "/v1/rd/curve", client.CurveRequest{}},
		{"post", "/v1/governance/flag", client.FlagRequest{}},
	} {
		var op struct {
			RequestBody struct {
				Content map[string]struct {
					Schema struct {
						Ref string `json:"$ref"`
					} `json:"schema"`
				} `json:"content"`
			} `json:"requestBody"`
		}
		if err := json.Unmarshal(d.Paths[c.path][c.method], &op); err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		name := strings.TrimPrefix(op.RequestBody.Content["application/json"].Schema.Ref, "#/components/schemas/")
		api := slices.Sorted(maps.Keys(d.Components.Schemas[name].Properties))
		sdk := jsonFields(reflect.TypeOf(c.sdk))
		slices.Sort(sdk)
		if len(api) == 0 || !slices.Equal(api, sdk) {
			t.Errorf("%s %s: the API takes %q, %T has %q", c.method, c.path, api, c.sdk, sdk)
		}
	}
}
