// Package configtype reads the types and defaults of a plugin's config schema
// (base.ConfigAttribute's Type and Default) as the host does: limitd when it checks a
// config block, and sdktest and limitctl plugin check when they configure a plugin the
// same way. One copy, so the two cannot drift.
package configtype

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Bounds of a type constraint a plugin declares: it comes from the plugin, so it is
// bounded before HCL's parser recurses into it.
const (
	MaxTypeBytes   = 64 << 10
	MaxTypeNesting = 32
)

// ParseType parses an HCL type constraint such as "list(string)"; its error says what
// is wrong, without a position (the string is a plugin's, not the operator's).
func ParseType(s string) (cty.Type, error) {
	// The string comes from a plugin: bound it before HCL's parser recurses into it.
	if len(s) > MaxTypeBytes {
		return cty.NilType, fmt.Errorf("longer than %d bytes", MaxTypeBytes)
	}
	depth := 0
	for _, c := range s {
		switch c {
		case '(', '{', '[':
			if depth++; depth > MaxTypeNesting {
				return cty.NilType, fmt.Errorf("nested more than %d levels deep", MaxTypeNesting)
			}
		case ')', '}', ']':
			depth--
		}
	}
	expr, diags := hclsyntax.ParseExpression([]byte(s), "<plugin schema>", hcl.InitialPos)
	if !diags.HasErrors() {
		var ty cty.Type
		ty, diags = typeexpr.TypeConstraint(expr)
		if !diags.HasErrors() {
			return ty, nil
		}
	}
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			msg := d.Summary
			if d.Detail != "" {
				msg += ": " + strings.TrimSuffix(d.Detail, ".")
			}
			return cty.NilType, fmt.Errorf("%s", msg)
		}
	}
	return cty.NilType, fmt.Errorf("invalid type")
}

// DefaultValue turns a schema default, any JSON-encodable value or a json.RawMessage, into
// a value of type ty; nil and JSON null give a null value.
func DefaultValue(def any, ty cty.Type) (cty.Value, error) {
	if def == nil {
		return cty.NullVal(ty), nil
	}
	var raw []byte
	switch v := def.(type) {
	case json.RawMessage:
		raw = v
	case []byte:
		raw = v
	default:
		var err error
		if raw, err = json.Marshal(v); err != nil {
			return cty.NilVal, err
		}
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return cty.NullVal(ty), nil
	}
	implied, err := ctyjson.ImpliedType(raw)
	if err != nil {
		return cty.NilVal, err
	}
	v, err := ctyjson.Unmarshal(raw, implied)
	if err != nil {
		return cty.NilVal, err
	}
	if ty == cty.DynamicPseudoType {
		return v, nil
	}
	return convert.Convert(v, ty)
}
