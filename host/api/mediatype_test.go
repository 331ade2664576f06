package api

import (
	"os"
	"strings"
	"testing"
)

// TestContentTypesDocumented: the Content-Types the API reads as JSON and those it refuses
// (415) are the ones README's 415 row names, each on its side: text/plain and curl -d's
// application/x-www-form-urlencoded are read as JSON, not refused.
func TestContentTypesDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for _, l := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(l, "| 415 |") {
			row = l
		}
	}
	accepted, refused, ok := strings.Cut(row, " such as ")
	if !ok {
		t.Fatalf("README's 415 row does not list the accepted types, then the refused ones \"such as\": %q", row)
	}
	for _, c := range []struct {
		ct, named string
		ok        bool
	}{
		{"application/json", "`application/json`", true},
		{"application/problem+json; charset=utf-8", "`application/*+json`", true},
		{"text/plain", "`text/plain`", true},
		{"application/x-www-form-urlencoded", "`application/x-www-form-urlencoded`", true},
		{"", "or none", true},
		{"multipart/form-data; boundary=x", "`multipart/form-data`", false},
		{"application/xml", "`application/xml`", false},
		{"text/html", "`text/html`", false},
	} {
		if got := jsonContentType(c.ct); got != c.ok {
			t.Errorf("jsonContentType(%q) = %v, want %v", c.ct, got, c.ok)
		}
		side := refused
		if c.ok {
			side = accepted
		}
		if !strings.Contains(side, c.named) {
			t.Errorf("README's 415 row does not name %s among the types %s: %q", c.named, map[bool]string{true: "read as JSON", false: "refused"}[c.ok], row)
		}
	}
}
