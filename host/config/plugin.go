package config

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/limitgraph/limit/sdk/base"
	"github.com/limitgraph/limit/sdk/configtype"
)

// DecodePluginConfig checks b's config block against the schema the plugin declared and
// returns it as a JSON object, ready for base.ConfigureRequest.Config. Unknown attributes,
// blocks, values of the wrong type and missing required attributes are reported at their
// place in the file. An absent attribute takes the schema's default; one without a
// default is left out of the object. An invalid schema (a type that is not an HCL type
// constraint, a default that does not fit its type) is reported as the plugin's fault.
// The JSON is nil when there are errors, and "{}" for an empty config.
func DecodePluginConfig(b *PluginBlock, schema base.Schema) (json.RawMessage, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	spec := hcldec.ObjectSpec{}
	types := make(map[string]cty.Type, len(schema.Attributes))
	b.setSensitive(schema)
	for _, a := range schema.Attributes {
		if !hclsyntax.ValidIdentifier(a.Name) {
			diags = append(diags, schemaDiag(b, "attribute name %q is not a valid HCL identifier", a.Name))
			continue
		}
		if _, dup := spec[a.Name]; dup {
			diags = append(diags, schemaDiag(b, "attribute %q is declared twice", a.Name))
			continue
		}
		ty, err := configtype.ParseType(a.Type)
		if err != nil {
			diags = append(diags, schemaDiag(b, "attribute %q has type %q, which is not an HCL type constraint: %s",
				a.Name, a.Type, err))
			continue
		}
		types[a.Name] = ty
		spec[a.Name] = &hcldec.AttrSpec{Name: a.Name, Type: ty, Required: a.Required}
	}
	if diags.HasErrors() {
		return nil, diags
	}

	body := b.Config
	if body == nil {
		body = emptyBody(b.DeclRange)
	}
	ctx := b.evalCtx
	if ctx == nil {
		ctx = newEvalContext(nil)
	}
	val, ds := hcldec.Decode(body, spec, ctx)
	for _, d := range ds {
		d.Summary = b.String() + ": " + d.Summary
		if d.Subject != nil && d.Subject.Filename == "" {
			d.Subject = nil
		}
		if d.Context != nil && d.Context.Filename == "" {
			d.Context = nil
		}
	}
	if ds.HasErrors() {
		ds = sharpenValueErrors(b, body, types, ctx, ds)
	}
	diags = append(diags, ds...)
	if ds.HasErrors() {
		return nil, diags
	}
	if set, _ := body.JustAttributes(); len(set) > 0 {
		diags = append(diags, strictTypes(b, set, types, ctx)...)
		if diags.HasErrors() {
			return nil, diags
		}
	}
	// Converting a value to an object type drops the attributes the type does not name:
	// a misspelt one inside an object (a fallback's "base_ur1") would silently be lost.
	if set, _ := body.JustAttributes(); len(set) > 0 {
		for _, a := range schema.Attributes {
			if attr, ok := set[a.Name]; ok {
				diags = append(diags, extraAttributes(b, attr, types[a.Name], ctx)...)
			}
		}
		if diags.HasErrors() {
			return nil, diags
		}
	}

	attrs := map[string]cty.Value{}
	for _, a := range schema.Attributes {
		v := val.GetAttr(a.Name)
		if v.IsNull() && a.Required {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  b.String() + ": Missing required argument",
				Detail:   fmt.Sprintf("The argument %q is required and must not be null.", a.Name),
				Subject:  subjectOf(hcldec.SourceRange(body, spec[a.Name])),
			})
			continue
		}
		if v.IsNull() {
			def, err := configtype.DefaultValue(a.Default, types[a.Name])
			if err != nil {
				diags = append(diags, schemaDiag(b, "the default of attribute %q does not fit its type %q: %s",
					a.Name, a.Type, err))
				continue
			}
			v = def
		}
		if v.IsNull() {
			continue
		}
		v, _ = v.Unmark()
		if a.Name == "url" && b.URLFromEnv {
			continue // the plugin reads DATABASE_URL instead
		}
		attrs[a.Name] = v
	}
	if diags.HasErrors() {
		return nil, diags
	}
	obj := cty.EmptyObjectVal
	if len(attrs) > 0 {
		obj = cty.ObjectVal(attrs)
	}
	out, err := ctyjson.Marshal(obj, obj.Type())
	if err != nil {
		// Every value here is known and of a concrete type, so this is a bug of ours.
		return nil, append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  b.String() + ": cannot encode the config block as JSON",
			Detail:   err.Error(),
			Subject:  subjectOf(b.ConfigRange),
		})
	}
	return out, diags
}

// extraAttributes reports the attributes of objects in attr's value that ty, at their
// place in it, has no room for: at any depth, in lists, sets, maps and tuples of objects
// and in nested objects. Each points at the attribute's name in the file where the value
// is written out there, else at the nearest enclosing expression.
func extraAttributes(b *PluginBlock, attr *hcl.Attribute, ty cty.Type, ctx *hcl.EvalContext) hcl.Diagnostics {
	v, ds := attr.Expr.Value(ctx)
	if ds.HasErrors() {
		return nil // hcldec reported it
	}
	v, _ = v.UnmarkDeep()
	var diags hcl.Diagnostics
	walkValue(v, ty, attr.Expr, attr.Name, func(v cty.Value, ty cty.Type, expr hcl.Expression, path string) bool {
		if !ty.IsObjectType() || !(v.Type().IsObjectType() || v.Type().IsMapType()) {
			return true
		}
		names := attributeNames(ty)
		for it := v.ElementIterator(); it.Next(); {
			k, _ := it.Element()
			name := k.AsString()
			if _, ok := ty.AttributeTypes()[name]; ok {
				continue
			}
			d := &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  b.String() + ": Unsupported argument",
				Detail: fmt.Sprintf("An argument named %q is not expected in %s; it takes %s.",
					name, path, quoteList(names)),
				Subject: subjectOf(attr.Expr.Range()),
				Context: subjectOf(hcl.RangeBetween(attr.NameRange, attr.Expr.Range())),
			}
			if s := suggest(name, names); s != "" {
				d.Detail += fmt.Sprintf(" Did you mean %q?", s)
			}
			if expr != nil {
				d.Subject = subjectOf(expr.Range())
				if kr, ok := keyRange(expr, name); ok {
					d.Subject = subjectOf(kr)
				}
			}
			diags = append(diags, d)
		}
		return true
	})
	return diags
}

// attributeNames are the names of an object type's attributes, sorted.
func attributeNames(ty cty.Type) []string {
	names := make([]string, 0, len(ty.AttributeTypes()))
	for n := range ty.AttributeTypes() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// walkValue walks v against ty, the type a plugin's schema gives it, calling visit at
// every place: the value, its type there, its expression where the file writes it out
// (else nil) and its path (extra[0].weight). Where visit returns true and the value's shape
// fits the type's (an object or a map against an object type, a list, set or tuple against
// a list or set type, …), it goes on into the attributes the type has and the elements.
// Null and unknown values, and places of any type, are not visited.
func walkValue(v cty.Value, ty cty.Type, expr hcl.Expression, path string, visit func(v cty.Value, ty cty.Type, expr hcl.Expression, path string) bool) {
	if v.IsNull() || !v.IsKnown() || ty == cty.DynamicPseudoType || !visit(v, ty, expr, path) {
		return
	}
	vt := v.Type()
	step := func(key string) hcl.Expression {
		if expr == nil {
			return nil
		}
		return stepInto(expr, key)
	}
	switch {
	case ty.IsObjectType() && (vt.IsObjectType() || vt.IsMapType()):
		want := ty.AttributeTypes()
		for it := v.ElementIterator(); it.Next(); {
			k, ev := it.Element()
			if at, ok := want[k.AsString()]; ok {
				walkValue(ev, at, step(k.AsString()), path+"."+k.AsString(), visit)
			}
		}
	case (ty.IsListType() || ty.IsSetType()) && (vt.IsTupleType() || vt.IsListType() || vt.IsSetType()):
		i := 0
		for it := v.ElementIterator(); it.Next(); i++ {
			_, ev := it.Element()
			var sub hcl.Expression
			if !vt.IsSetType() { // a set's order is not the source's
				sub = step(strconv.Itoa(i))
			}
			walkValue(ev, ty.ElementType(), sub, fmt.Sprintf("%s[%d]", path, i), visit)
		}
	case ty.IsMapType() && (vt.IsObjectType() || vt.IsMapType()):
		for it := v.ElementIterator(); it.Next(); {
			k, ev := it.Element()
			walkValue(ev, ty.ElementType(), step(k.AsString()), fmt.Sprintf("%s[%q]", path, k.AsString()), visit)
		}
	case ty.IsTupleType() && (vt.IsTupleType() || vt.IsListType()):
		ets := ty.TupleElementTypes()
		i := 0
		for it := v.ElementIterator(); it.Next() && i < len(ets); i++ {
			_, ev := it.Element()
			walkValue(ev, ets[i], step(strconv.Itoa(i)), fmt.Sprintf("%s[%d]", path, i), visit)
		}
	}
}

// sharpenValueErrors improves hcldec's errors ds about the values of attributes of
// structural types. Its conversion error names neither where in the value a primitive
// failed to convert (extra = [{weight = "heavy"}] gave only "a number is required") nor,
// when an object lacks a required attribute, the misspelt one written in its place
// ({wieght = 1} gave only "attribute \"weight\" is required"). For each such attribute
// the errors of valueMismatches, each at its place, replace hcldec's, and the attributes
// its objects have no room for are reported beside them (extraAttributes).
func sharpenValueErrors(b *PluginBlock, body hcl.Body, types map[string]cty.Type, ctx *hcl.EvalContext, ds hcl.Diagnostics) hcl.Diagnostics {
	set, _ := body.JustAttributes()
	names := make([]string, 0, len(set))
	for n := range set {
		if ty, ok := types[n]; ok && !ty.IsPrimitiveType() {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var more hcl.Diagnostics
	replaced := map[hcl.Range]bool{}
	for _, n := range names {
		attr := set[n]
		if m := valueMismatches(b, attr, types[n], ctx); len(m) > 0 {
			replaced[attr.Expr.Range()] = true
			more = append(more, m...)
		}
		more = append(more, extraAttributes(b, attr, types[n], ctx)...)
	}
	if len(more) == 0 {
		return ds
	}
	out := make(hcl.Diagnostics, 0, len(ds)+len(more))
	for _, d := range ds {
		if d.Subject == nil || !replaced[*d.Subject] {
			out = append(out, d)
		}
	}
	return append(out, more...)
}

// valueMismatches reports where attr's value does not fit ty: a value that does not
// convert to a primitive type, a value of the wrong kind for a collection or an object, a
// required attribute an object lacks. Each names its path in the value (extra[0].weight)
// and points at it in the file where the value is written out there.
func valueMismatches(b *PluginBlock, attr *hcl.Attribute, ty cty.Type, ctx *hcl.EvalContext) hcl.Diagnostics {
	v, ds := attr.Expr.Value(ctx)
	if ds.HasErrors() {
		return nil
	}
	v, _ = v.UnmarkDeep()
	var diags hcl.Diagnostics
	report := func(expr hcl.Expression, format string, args ...any) {
		subject := attr.Expr.Range()
		if expr != nil {
			subject = expr.Range()
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  b.String() + ": Incorrect attribute value type",
			Detail:   fmt.Sprintf(format, args...),
			Subject:  subjectOf(subject),
			Context:  subjectOf(hcl.RangeBetween(attr.NameRange, attr.Expr.Range())),
		})
	}
	walkValue(v, ty, attr.Expr, attr.Name, func(v cty.Value, ty cty.Type, expr hcl.Expression, path string) bool {
		vt := v.Type()
		switch {
		case ty.IsPrimitiveType():
			if _, err := convert.Convert(v, ty); err != nil {
				report(expr, "%s must be %s, not %s.", path, typeName(ty), describeValue(v))
			}
		case ty.IsObjectType():
			if !vt.IsObjectType() && !vt.IsMapType() {
				report(expr, "%s must be an object, not %s.", path, describeValue(v))
				return false
			}
			for _, n := range attributeNames(ty) {
				if !hasElement(v, n) && !ty.AttributeOptional(n) {
					report(expr, "%s lacks the required attribute %q.", path, n)
				}
			}
		case ty.IsListType() || ty.IsSetType():
			if !vt.IsTupleType() && !vt.IsListType() && !vt.IsSetType() {
				report(expr, "%s must be a list, not %s.", path, describeValue(v))
				return false
			}
		case ty.IsMapType():
			if !vt.IsObjectType() && !vt.IsMapType() {
				report(expr, "%s must be a map, not %s.", path, describeValue(v))
				return false
			}
		case ty.IsTupleType():
			if (!vt.IsTupleType() && !vt.IsListType()) || v.LengthInt() != len(ty.TupleElementTypes()) {
				report(expr, "%s must be a tuple of %d elements, not %s.", path, len(ty.TupleElementTypes()), describeValue(v))
				return false
			}
		}
		return true
	})
	return diags
}

// hasElement reports whether v, an object or a map, has an element named name.
func hasElement(v cty.Value, name string) bool {
	for it := v.ElementIterator(); it.Next(); {
		if k, _ := it.Element(); k.AsString() == name {
			return true
		}
	}
	return false
}

// describeValue says what a value is, for an error: a primitive with its value (a long
// string cut), anything else by its type.
func describeValue(v cty.Value) string {
	switch v.Type() {
	case cty.String:
		s := v.AsString()
		if len(s) > 40 {
			s = s[:40] + "…"
		}
		return "the string " + strconv.Quote(s)
	case cty.Number:
		return "the number " + v.AsBigFloat().Text('g', -1)
	case cty.Bool:
		return fmt.Sprintf("the bool %v", v.True())
	}
	if v.Type().IsTupleType() || v.Type().IsListType() || v.Type().IsSetType() {
		return fmt.Sprintf("a list of %d elements", v.LengthInt())
	}
	if v.Type().IsObjectType() || v.Type().IsMapType() {
		return "an object"
	}
	return v.Type().FriendlyName()
}

// strictTypes refuses the conversions HCL would make silently between a literal of one
// primitive type and an attribute of another: true or false for a string (path = true
// would name a file "true"), and a quoted constant for a number or a bool
// (max_batch = "10"). A string computed by an expression, such as env("MAX_BATCH"), is
// still converted: the environment holds only strings.
func strictTypes(b *PluginBlock, set hcl.Attributes, types map[string]cty.Type, ctx *hcl.EvalContext) hcl.Diagnostics {
	var diags hcl.Diagnostics
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		attr, ty := set[n], types[n]
		if !ty.IsPrimitiveType() {
			continue
		}
		var got, fix string
		switch {
		case ty == cty.String:
			if v, ds := attr.Expr.Value(ctx); !ds.HasErrors() && v.Type() == cty.Bool {
				got, fix = "a bool", "quote it if the text is meant"
			}
		case ty == cty.Number || ty == cty.Bool:
			if t, ok := attr.Expr.(*hclsyntax.TemplateExpr); ok && t.IsStringLiteral() {
				got, fix = "a quoted string", "remove the quotes"
			}
		}
		if got == "" {
			continue
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  b.String() + ": Incorrect attribute value type",
			Detail:   fmt.Sprintf("%s must be %s, not %s: %s.", n, typeName(ty), got, fix),
			Subject:  subjectOf(attr.Expr.Range()),
			Context:  subjectOf(hcl.RangeBetween(attr.NameRange, attr.Expr.Range())),
		})
	}
	return diags
}

// typeName says a primitive type with its article.
func typeName(ty cty.Type) string {
	switch ty {
	case cty.String:
		return "a string"
	case cty.Number:
		return "a number"
	case cty.Bool:
		return "a bool (true or false)"
	}
	return ty.FriendlyName()
}

// keyRange returns the range of the key name in the object constructor expr.
func keyRange(expr hcl.Expression, name string) (hcl.Range, bool) {
	e, ok := expr.(*hclsyntax.ObjectConsExpr)
	if !ok {
		return hcl.Range{}, false
	}
	for _, item := range e.Items {
		if k, ok := itemKey(item); ok && k == name {
			return item.KeyExpr.Range(), true
		}
	}
	return hcl.Range{}, false
}

// suggest returns the name in names closest to given, if one is close enough to be a
// likely typo (as HCL's own "Did you mean" does).
func suggest(given string, names []string) string {
	for _, n := range names {
		if levenshtein.Distance(given, n, nil) < 3 {
			return n
		}
	}
	return ""
}

// quoteList renders names as "a", "b" and "c".
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	switch len(q) {
	case 0:
		return "no arguments"
	case 1:
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}

// schemaDiag reports a fault in the schema a plugin declared: a bug of the plugin, which
// the operator can only report. It points at the block that loads the plugin.
func schemaDiag(b *PluginBlock, format string, args ...any) *hcl.Diagnostic {
	subject := b.PluginRange
	if subject.Filename == "" {
		subject = b.DeclRange
	}
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  b.String() + ": invalid config schema from plugin " + strconv.Quote(b.Plugin),
		Detail: "The plugin's config schema is wrong: " + fmt.Sprintf(format, args...) +
			". This is a bug in the plugin; report it to its author.",
		Subject: subjectOf(subject),
	}
}

// PluginDiagnostics maps the diagnostics a plugin returned from Configure back to b's
// config block. A diagnostic whose Path names an attribute set in the block points at its
// value, descending into object and tuple constructors for the rest of the path as far as
// the source allows; any other points at the config block (or at the declaring block when
// there is none). Each Summary starts with the block, e.g. `storage "bolt": `.
func PluginDiagnostics(b *PluginBlock, ds base.Diagnostics) hcl.Diagnostics {
	if len(ds) == 0 {
		return nil
	}
	var attrs hcl.Attributes
	if b.Config != nil {
		attrs, _ = b.Config.JustAttributes()
	}
	out := make(hcl.Diagnostics, 0, len(ds))
	for _, d := range ds {
		diag := &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  b.String() + ": " + d.Summary,
			Detail:   d.Detail,
			Subject:  subjectOf(b.ConfigRange),
		}
		if d.Severity == base.SeverityWarning {
			diag.Severity = hcl.DiagWarning
		}
		resolved := 0
		if len(d.Path) > 0 {
			if attr, ok := attrs[d.Path[0]]; ok {
				expr, n := descend(attr.Expr, d.Path[1:])
				resolved = 1 + n
				diag.Subject = subjectOf(expr.Range())
				diag.Context = subjectOf(hcl.RangeBetween(attr.NameRange, attr.Expr.Range()))
			}
		}
		if resolved < len(d.Path) {
			note := fmt.Sprintf("The plugin reported this about %s.", strings.Join(d.Path, "."))
			if diag.Detail == "" {
				diag.Detail = note
			} else {
				diag.Detail += "\n\n" + note
			}
		}
		out = append(out, diag)
	}
	return out
}

// descend follows path into object and tuple constructor expressions and returns the
// deepest expression reached and how many path elements it followed.
func descend(expr hcl.Expression, path []string) (hcl.Expression, int) {
	n := 0
	for _, step := range path {
		next := stepInto(expr, step)
		if next == nil {
			break
		}
		expr = next
		n++
	}
	return expr, n
}

func stepInto(expr hcl.Expression, step string) hcl.Expression {
	switch e := expr.(type) {
	case *hclsyntax.ObjectConsExpr:
		for _, item := range e.Items {
			if k, ok := itemKey(item); ok && k == step {
				return item.ValueExpr
			}
		}
	case *hclsyntax.TupleConsExpr:
		if i, err := strconv.Atoi(step); err == nil && i >= 0 && i < len(e.Exprs) {
			return e.Exprs[i]
		}
	}
	return nil
}

// itemKey returns the key of an object constructor's item, when it is a name or a
// constant.
func itemKey(item hclsyntax.ObjectConsItem) (string, bool) {
	key := item.KeyExpr
	if k, ok := key.(*hclsyntax.ObjectConsKeyExpr); ok {
		if kw := hcl.ExprAsKeyword(k.Wrapped); kw != "" {
			return kw, true
		}
		key = k.Wrapped
	}
	v, diags := key.Value(nil)
	if diags.HasErrors() || !v.IsKnown() || v.IsNull() {
		return "", false
	}
	s, err := convert.Convert(v, cty.String)
	if err != nil {
		return "", false
	}
	return s.AsString(), true
}
