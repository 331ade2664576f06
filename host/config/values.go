package config

import (
	"bytes"
	"fmt"
	"math"
	"math/big"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/limitgraph/limit/host/diskspace"
	"github.com/limitgraph/limit/sdk/bytesize"
)

// decoder evaluates attributes against one EvalContext and collects every diagnostic, so
// that one pass over the file reports all the problems it can find. Each accessor returns
// the attribute only when it is set to a valid, non-null value of the wanted type; null
// counts as absent, so the default applies.
type decoder struct {
	ctx   *hcl.EvalContext
	diags hcl.Diagnostics
	// listen is host.listen's attribute, if the file sets it.
	listen *hcl.Attribute
	// src is the file's text, to tell which values come from env().
	src []byte
}

// fromEnv reports whether attr's value may come from the environment: its source calls
// env(). Such a value may be a secret, so diagnostics do not quote it.
func (d *decoder) fromEnv(attr *hcl.Attribute) bool {
	rng := attr.Expr.Range()
	if rng.Start.Byte < 0 || rng.End.Byte > len(d.src) || rng.Start.Byte > rng.End.Byte {
		return true // cannot tell: assume the worst
	}
	return bytes.Contains(d.src[rng.Start.Byte:rng.End.Byte], []byte("env("))
}

// quote returns s quoted for a diagnostic about attr, or a placeholder when the value
// comes from env().
func (d *decoder) quote(attr *hcl.Attribute, s string) string {
	if d.fromEnv(attr) {
		return "the value from env() (not shown: it may be secret)"
	}
	return strconv.Quote(s)
}

func (d *decoder) add(diags hcl.Diagnostics) {
	d.diags = append(d.diags, diags...)
}

// invalid reports an attribute whose value has the right type but is not acceptable.
func (d *decoder) invalid(attr *hcl.Attribute, summary, format string, args ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity:    hcl.DiagError,
		Summary:     summary,
		Detail:      fmt.Sprintf(format, args...),
		Subject:     attr.Expr.Range().Ptr(),
		Context:     hcl.RangeBetween(attr.NameRange, attr.Expr.Range()).Ptr(),
		Expression:  attr.Expr,
		EvalContext: d.ctx,
	})
}

// value evaluates attrs[name] and converts it to ty.
func (d *decoder) value(attrs hcl.Attributes, name string, ty cty.Type) (cty.Value, *hcl.Attribute) {
	attr, ok := attrs[name]
	if !ok {
		return cty.NilVal, nil
	}
	val, diags := attr.Expr.Value(d.ctx)
	d.add(diags)
	if diags.HasErrors() {
		return cty.NilVal, nil
	}
	val, err := convert.Convert(val, ty)
	if err != nil {
		d.invalid(attr, "Incorrect attribute value type",
			"Inappropriate value for attribute %q: %s.", name, err.Error())
		return cty.NilVal, nil
	}
	if val.IsNull() || !val.IsWhollyKnown() {
		return cty.NilVal, nil
	}
	return val, attr
}

func (d *decoder) str(attrs hcl.Attributes, name string) (string, *hcl.Attribute) {
	val, attr := d.value(attrs, name, cty.String)
	if attr == nil {
		return "", nil
	}
	return val.AsString(), attr
}

func (d *decoder) boolean(attrs hcl.Attributes, name string) (bool, *hcl.Attribute) {
	val, attr := d.value(attrs, name, cty.Bool)
	if attr == nil {
		return false, nil
	}
	return val.True(), attr
}

func (d *decoder) float(attrs hcl.Attributes, name string) (float64, *hcl.Attribute) {
	val, attr := d.value(attrs, name, cty.Number)
	if attr == nil {
		return 0, nil
	}
	f, _ := val.AsBigFloat().Float64()
	if math.IsInf(f, 0) {
		d.invalid(attr, "Invalid "+name, "%s must be a finite number.", name)
		return 0, nil
	}
	return f, attr
}

// int64 decodes a whole number. min and max are the attribute's bounds, which the caller
// checks; here they only explain a number beyond what an int64 holds.
func (d *decoder) int64(attrs hcl.Attributes, name string, min, max int64) (int64, *hcl.Attribute) {
	val, attr := d.value(attrs, name, cty.Number)
	if attr == nil {
		return 0, nil
	}
	bf := val.AsBigFloat()
	n, acc := bf.Int64()
	switch {
	case !bf.IsInt():
		d.invalid(attr, "Invalid "+name, "%s must be a whole number; got %s.", name, bf.Text('g', -1))
		return 0, nil
	case acc != big.Exact:
		d.invalid(attr, "Invalid "+name, "%s must be a whole number from %d to %d; got %s.", name, min, max, bf.Text('g', -1))
		return 0, nil
	}
	return n, attr
}

// duration decodes a duration string such as "30s". Negative durations are refused, and
// zero too unless zeroOK.
func (d *decoder) duration(attrs hcl.Attributes, name string, zeroOK bool) (time.Duration, *hcl.Attribute) {
	s, attr := d.str(attrs, name)
	if attr == nil {
		return 0, nil
	}
	dur, err := time.ParseDuration(s)
	switch {
	case err != nil:
		why := ": " + err.Error()
		if d.fromEnv(attr) {
			why = ""
		}
		d.invalid(attr, "Invalid duration",
			"%s = %s is not a duration%s. Write a number with a unit, such as \"30s\", \"5m\" or \"1h30m\".",
			name, d.quote(attr, s), why)
		return 0, nil
	case dur < 0:
		d.invalid(attr, "Invalid duration", "%s must not be negative; got %s.", name, d.quote(attr, s))
		return 0, nil
	case dur == 0 && !zeroOK:
		d.invalid(attr, "Invalid duration", "%s must be longer than zero; got %s.", name, d.quote(attr, s))
		return 0, nil
	}
	return dur, attr
}

// stringMap decodes a map(string), refusing keys that cannot be environment variable names.
func (d *decoder) stringList(attrs hcl.Attributes, name string) ([]string, *hcl.Attribute) {
	val, attr := d.value(attrs, name, cty.List(cty.String))
	if attr == nil {
		return nil, nil
	}
	var out []string
	for it := val.ElementIterator(); it.Next(); {
		_, v := it.Element()
		if v.IsNull() {
			d.invalid(attr, "Invalid "+name, "%s must not hold null.", name)
			continue
		}
		out = append(out, v.AsString())
	}
	return out, attr
}

func (d *decoder) stringMap(attrs hcl.Attributes, name string) (map[string]string, *hcl.Attribute) {
	val, attr := d.value(attrs, name, cty.Map(cty.String))
	if attr == nil {
		return nil, nil
	}
	out := make(map[string]string, val.LengthInt())
	ok := true
	for it := val.ElementIterator(); it.Next(); {
		k, v := it.Element()
		if v.IsNull() {
			d.invalid(attr, "Invalid "+name, "The value of %q in %s must not be null.", k.AsString(), name)
			ok = false
			continue
		}
		key, value := k.AsString(), v.AsString()
		if key == "" || strings.ContainsAny(key, "=\x00") {
			d.invalid(attr, "Invalid "+name,
				"%q cannot be an environment variable name: a name must not be empty nor contain \"=\" or NUL.", key)
			ok = false
			continue
		}
		if strings.ContainsRune(value, 0) {
			d.invalid(attr, "Invalid "+name, "The value of %q must not contain a NUL character.", key)
			ok = false
			continue
		}
		out[key] = value
	}
	if !ok {
		return nil, nil
	}
	return out, attr
}

// checkPort accepts a decimal port number from 0 (any free port) to 65535.
func checkPort(p string) error {
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 || strings.TrimLeft(p, "0123456789") != "" {
		return fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	return nil
}

// Loopback reports whether a listen address (host:port) keeps the API on this machine's
// loopback interface: a loopback IP or "localhost"; an empty host, 0.0.0.0, ::, another
// IP or name may be reachable from elsewhere.
func Loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// warnListen warns when the API would listen beyond loopback: it has no authentication
// of its own, so whoever reaches it can create sessions and run code.
func (d *decoder) warnListen(cfg *Config) {
	if Loopback(cfg.Host.Listen) || len(cfg.API.Tokens) > 0 {
		return
	}
	// API_HOST or API_PORT, when they set the address, clear its range.
	fromEnv := cfg.Host.ListenRange == (hcl.Range{}) && cfg.Host.Listen != DefaultListen
	what := "host.listen"
	if fromEnv {
		what = "host.listen (as API_HOST and API_PORT set it)"
	}
	diag := &hcl.Diagnostic{
		Severity: hcl.DiagWarning,
		Summary:  "The API listens beyond loopback",
		Detail: fmt.Sprintf("%s is %q and api.token_file is not set: anyone who can reach that address can create sessions and run code in them. "+
			"Set api.token_file (clients then send \"Authorization: Bearer <token>\"), or keep the API on 127.0.0.1 behind an authenticating proxy, or make sure a firewall lets only trusted clients reach it.", what, cfg.Host.Listen),
	}
	if d.listen != nil && !fromEnv {
		diag.Subject = subjectOf(d.listen.Expr.Range())
	}
	d.add(hcl.Diagnostics{diag})
}

// checkListen accepts host:port with a numeric port; the host may be empty (every
// interface).
func checkListen(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	return checkPort(port)
}

// emptyBody is the Config of a plugin block without a config block. It is an empty
// hclsyntax body placed at rng, so that "missing required argument" diagnostics point at
// the declaring block rather than nowhere.
func emptyBody(rng hcl.Range) hcl.Body {
	return &hclsyntax.Body{
		Attributes: hclsyntax.Attributes{},
		SrcRange:   rng,
		EndRange:   rng,
	}
}

// subjectOf returns a pointer to rng, or nil when rng does not come from a file.
func subjectOf(rng hcl.Range) *hcl.Range {
	if rng.Filename == "" {
		return nil
	}
	return rng.Ptr()
}

func oneOf(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}

// parseReserve parses host.min_free_disk: a size, a percentage of the disk ("5%", above 0
// and below 100), or 0 for no reserve. Its error completes "min_free_disk = VALUE ...".
func parseReserve(s string) (diskspace.Reserve, error) {
	if p, ok := strings.CutSuffix(strings.TrimSpace(s), "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		switch {
		case err != nil:
			return diskspace.Reserve{}, fmt.Errorf("is not a percentage")
		case f == 0:
			return diskspace.Reserve{Off: true}, nil
		case f < 0 || f >= 100 || math.IsNaN(f):
			return diskspace.Reserve{}, fmt.Errorf("must be a percentage from 0 to below 100")
		}
		return diskspace.Reserve{Percent: f}, nil
	}
	n, err := bytesize.Parse(s)
	switch {
	case err != nil:
		return diskspace.Reserve{}, err
	case n == 0:
		return diskspace.Reserve{Off: true}, nil
	}
	return diskspace.Reserve{Bytes: n}, nil
}
