package sdktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/limitgraph/limit/sdk/base"
)

// ApplySchema does to config, a plugin's configuration as a JSON object, what the host
// does to a plugin's config block before it calls Configure: it checks the schema the
// plugin declared (attribute names that are HCL identifiers, declared once, with a type
// that is an HCL type constraint and a default that fits it), refuses attributes the
// schema does not declare (also inside object values), values that do not convert to
// their type and missing required attributes, and fills in the defaults of absent
// attributes. It returns the config Configure gets, or error diagnostics with the path of
// the attribute at fault. A diagnostic about the schema itself starts with
// "invalid config schema": it is a bug in the plugin, not in the config.
//
// The launchers of this package (LaunchStorage, LaunchRunner, LaunchGovernance, ...)
// apply it, so a plugin under test is configured as limitd would configure it.
func ApplySchema(schema base.Schema, config json.RawMessage) (json.RawMessage, base.Diagnostics) {
	var ds base.Diagnostics
	types := make(map[string]cty.Type, len(schema.Attributes))
	for _, a := range schema.Attributes {
		bad := func(format string, args ...any) {
			ds = append(ds, base.Errorf(nil, "invalid config schema (a bug in the plugin): "+format, args...))
		}
		if !hclsyntax.ValidIdentifier(a.Name) {
			bad("attribute name %q is not a valid HCL identifier", a.Name)
			continue
		}
		if _, dup := types[a.Name]; dup {
			bad("attribute %q is declared twice", a.Name)
			continue
		}
		ty, err := parseType(a.Type)
		if err != nil {
			bad("attribute %q has type %q, which is not an HCL type constraint: %v", a.Name, a.Type, err)
			continue
		}
		types[a.Name] = ty
		if _, err := defaultValue(a.Default, ty); err != nil {
			bad("the default of attribute %q does not fit its type %q: %v", a.Name, a.Type, err)
		}
	}
	if ds.HasErrors() {
		return nil, ds
	}

	config = bytes.TrimSpace(config)
	if len(config) == 0 {
		config = json.RawMessage("{}")
	}
	var given map[string]json.RawMessage
	if !json.Valid(config) {
		return nil, base.Diagnostics{base.Errorf(nil, "config is not valid JSON")}
	}
	if config[0] != '{' || json.Unmarshal(config, &given) != nil {
		return nil, base.Diagnostics{base.Errorf(nil, "config must be a JSON object")}
	}
	names := make([]string, 0, len(types))
	for n := range types {
		names = append(names, n)
	}
	sort.Strings(names)
	keys := make([]string, 0, len(given))
	for k := range given {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := types[k]; !ok {
			ds = append(ds, base.Errorf([]string{k}, "unsupported attribute %q%s", k, didYouMean(k, names)))
		}
	}

	attrs := map[string]cty.Value{}
	for _, a := range schema.Attributes {
		ty := types[a.Name]
		raw, ok := given[a.Name]
		if !ok || string(bytes.TrimSpace(raw)) == "null" {
			if a.Required {
				ds = append(ds, base.Errorf([]string{a.Name}, "attribute %q is required", a.Name))
				continue
			}
			if v, _ := defaultValue(a.Default, ty); !v.IsNull() {
				attrs[a.Name] = v
			}
			continue
		}
		v, err := defaultValue(raw, ty) // the same conversion as a default's
		if err != nil {
			ds = append(ds, base.Errorf([]string{a.Name}, "must be of type %s: %v", a.Type, err))
			continue
		}
		var extra []string
		if err := extraAttributes(raw, ty, a.Name, &extra); err == nil {
			for _, e := range extra {
				ds = append(ds, base.Errorf([]string{a.Name}, "%s", e))
			}
		}
		attrs[a.Name] = v
	}
	if ds.HasErrors() {
		return nil, ds
	}
	obj := cty.EmptyObjectVal
	if len(attrs) > 0 {
		obj = cty.ObjectVal(attrs)
	}
	out, err := ctyjson.Marshal(obj, obj.Type())
	if err != nil {
		return nil, base.Diagnostics{base.Errorf(nil, "cannot encode the config as JSON: %v", err)}
	}
	return out, nil
}

// extraAttributes appends to out a message for each attribute of an object in raw that
// ty, at its place, has no room for: converting to an object type drops them, so a
// misspelt attribute inside an object would silently be lost (the host refuses them too).
func extraAttributes(raw json.RawMessage, ty cty.Type, path string, out *[]string) error {
	switch {
	case ty.IsObjectType():
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		want := ty.AttributeTypes()
		names := make([]string, 0, len(want))
		for n := range want {
			names = append(names, n)
		}
		sort.Strings(names)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			at, ok := want[k]
			if !ok {
				*out = append(*out, fmt.Sprintf("an attribute named %q is not expected in %s%s", k, path, didYouMean(k, names)))
				continue
			}
			_ = extraAttributes(m[k], at, path+"."+k, out)
		}
	case ty.IsListType() || ty.IsSetType():
		var l []json.RawMessage
		if err := json.Unmarshal(raw, &l); err != nil {
			return err
		}
		for i, e := range l {
			_ = extraAttributes(e, ty.ElementType(), fmt.Sprintf("%s[%d]", path, i), out)
		}
	case ty.IsTupleType():
		var l []json.RawMessage
		if err := json.Unmarshal(raw, &l); err != nil {
			return err
		}
		ets := ty.TupleElementTypes()
		for i := 0; i < len(l) && i < len(ets); i++ {
			_ = extraAttributes(l[i], ets[i], fmt.Sprintf("%s[%d]", path, i), out)
		}
	case ty.IsMapType():
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		for k, e := range m {
			_ = extraAttributes(e, ty.ElementType(), fmt.Sprintf("%s[%q]", path, k), out)
		}
	}
	return nil
}

// didYouMean suggests the name in names closest to given, when one differs by a
// character or two, as HCL's own "Did you mean" does.
func didYouMean(given string, names []string) string {
	for _, n := range names {
		if levenshtein.Distance(given, n, nil) < 3 {
			return fmt.Sprintf("; did you mean %q?", n)
		}
	}
	return ""
}

// Bounds of a type constraint a plugin declares, as the host sets them.
const (
	maxTypeBytes   = 64 << 10
	maxTypeNesting = 32
)

// parseType parses an HCL type constraint such as "list(string)", as the host does.
func parseType(s string) (cty.Type, error) {
	// The string comes from a plugin: bound it before HCL's parser recurses into it.
	if len(s) > maxTypeBytes {
		return cty.NilType, fmt.Errorf("longer than %d bytes", maxTypeBytes)
	}
	depth := 0
	for _, c := range s {
		switch c {
		case '(', '{', '[':
			if depth++; depth > maxTypeNesting {
				return cty.NilType, fmt.Errorf("nested more than %d levels deep", maxTypeNesting)
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

// defaultValue turns a schema default, any JSON-encodable value or a json.RawMessage, into
// a value of type ty; nil and JSON null give a null value.
func defaultValue(def any, ty cty.Type) (cty.Value, error) {
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
