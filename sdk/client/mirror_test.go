package client_test

import (
	"reflect"
	"strings"
	"testing"

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
