// Package describe writes values for error messages as a user would read them: numbers
// as written (1048576, not 1.048576e+06) and a JSON value by what it is, so that the
// string "10" is not shown as if it were the number 10.
package describe

import (
	"fmt"
	"math"
	"strconv"

	"github.com/limitgraph/limit/internal/clip"
)

// Number writes f as a user would write it: 1048576, not 1.048576e+06 (beyond 1e21,
// in exponent form).
func Number(f float64) string {
	if math.Abs(f) >= 1e21 {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// JSON describes a value decoded from JSON (encoding/json's any) for an error: a number
// as Number writes it, a string quoted and clipped to 40 bytes, and a list or an object
// by its kind.
func JSON(v any) string {
	switch x := v.(type) {
	case float64:
		return Number(x)
	case string:
		return fmt.Sprintf("the string %q", clip.Marked(x, 40))
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return "null"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprint(v)
}
