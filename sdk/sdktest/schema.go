package sdktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/configtype"
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
		ty, err := configtype.ParseType(a.Type)
		if err != nil {
			bad("attribute %q has type %q, which is not an HCL type constraint: %v", a.Name, a.Type, err)
			continue
		}
		types[a.Name] = ty
		if _, err := configtype.DefaultValue(a.Default, ty); err != nil {
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
	names := slices.Sorted(maps.Keys(types))
	keys := slices.Sorted(maps.Keys(given))
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
			if v, _ := configtype.DefaultValue(a.Default, ty); !v.IsNull() {
				attrs[a.Name] = v
			}
			continue
		}
		v, err := configtype.DefaultValue(raw, ty) // the same conversion as a default's
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
		names := slices.Sorted(maps.Keys(want))
		keys := slices.Sorted(maps.Keys(m))
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
