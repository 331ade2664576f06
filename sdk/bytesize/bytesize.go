// Package bytesize parses the sizes written in configuration, such as "512MiB", "1.5 GB"
// or "4096": limitd's host.min_free_disk and the Python runner's memory and file limits
// read them the same way, through this one parser.
package bytesize

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// units are the units Parse accepts, lower-cased: decimal (kB, MB, GB, TB), binary (KiB,
// MiB, GiB, TiB) and the binary short forms (K, M, G, T), as in "ulimit" and Docker.
var units = map[string]float64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
}

// Parse parses a size in bytes: a number, possibly with a fraction, optionally followed
// by a unit (B; kB, MB, GB, TB; KiB, MiB, GiB, TiB; K, M, G, T), case-insensitive and
// with or without a space between. A fraction of a byte is dropped. Zero is a size; a
// caller that needs at least one byte checks that itself.
//
// Its error completes a sentence about the value, such as `memory_limit = "5 bananas"
// has an unknown unit "bananas"`.
func Parse(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "-") {
		return 0, errors.New("must not be negative")
	}
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	mult, ok := units[strings.ToLower(unit)]
	if !ok {
		return 0, fmt.Errorf("has an unknown unit %q", unit)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" {
		return 0, errors.New("is not a size")
	}
	// float64(math.MaxInt64) rounds up to 2^63, which no int64 holds.
	v := f * mult
	if v >= math.MaxInt64 {
		return 0, errors.New("is too large")
	}
	return int64(v), nil
}
