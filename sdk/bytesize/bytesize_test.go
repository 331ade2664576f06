package bytesize_test

import (
	"testing"

	"github.com/limitgraph/limit/sdk/bytesize"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"4096", 4096, ""},
		{"0", 0, ""},
		{" 17 ", 17, ""},
		{"12B", 12, ""},
		{"1kB", 1000, ""},
		{"100MB", 100e6, ""},
		{"1.5 GB", 1.5e9, ""},
		{"2TB", 2e12, ""},
		{"1KiB", 1 << 10, ""},
		{"512MiB", 512 << 20, ""},
		{"512 MiB", 512 << 20, ""},
		{"1gib", 1 << 30, ""},
		{"1.5GiB", 3 << 29, ""},
		{"3TiB", 3 << 40, ""},
		{"64k", 64 << 10, ""},
		{"64M", 64 << 20, ""},
		{"10G", 10 << 30, ""},
		{"1t", 1 << 40, ""},
		{"1.9", 1, ""},
		{"0.5KiB", 512, ""},
		{"", 0, "is not a size"},
		{"MiB", 0, "is not a size"},
		{".", 0, "is not a size"},
		{"1.2.3MiB", 0, "is not a size"},
		{"12 parsecs", 0, `has an unknown unit "parsecs"`},
		{"5 bananas ", 0, `has an unknown unit "bananas"`},
		{"1e9", 0, `has an unknown unit "e9"`},
		{"-5MiB", 0, "must not be negative"},
		{"-0", 0, "must not be negative"},
		{"99999999TiB", 0, "is too large"},
		{"8388608TiB", 0, "is too large"}, // exactly 2^63
	}
	for _, tt := range tests {
		got, err := bytesize.Parse(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("Parse(%q) = %d, %v; want error %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

// TestParseLargest: the largest size below 2^63 parses without overflowing.
func TestParseLargest(t *testing.T) {
	got, err := bytesize.Parse("8388607TiB")
	if err != nil || got != 8388607<<40 {
		t.Fatalf("Parse(8388607TiB) = %d, %v", got, err)
	}
}
