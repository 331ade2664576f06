package storage

import (
	"bytes"
	"testing"
)

func TestPrefixEnd(t *testing.T) {
	for _, tt := range []struct{ in, want []byte }{
		{nil, nil},
		{[]byte("a"), []byte("b")},
		{[]byte("ab"), []byte("ac")},
		{[]byte{'a', 0xff}, []byte("b")},
		{[]byte{0xff, 0xff}, nil},
		{[]byte{0x00}, []byte{0x01}},
	} {
		if got := PrefixEnd(tt.in); !bytes.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
			t.Errorf("PrefixEnd(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestScanBounds(t *testing.T) {
	for _, tt := range []struct {
		req          ScanRequest
		lower, upper string
	}{
		{ScanRequest{Prefix: []byte("ab")}, "ab", "ac"},
		{ScanRequest{Prefix: []byte("ab"), StartAfter: []byte("abc")}, "abc\x00", "ac"},
		{ScanRequest{Prefix: []byte("ab"), StartAfter: []byte("a")}, "ab", "ac"},
		{ScanRequest{StartAfter: []byte("k")}, "k\x00", ""},
	} {
		lower, upper := ScanBounds(tt.req)
		if string(lower) != tt.lower || string(upper) != tt.upper {
			t.Errorf("ScanBounds(%+v) = %q, %q; want %q, %q", tt.req, lower, upper, tt.lower, tt.upper)
		}
	}
}
