package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// newEvalContext returns the context every expression of the file is evaluated in: no
// variables, and the env function bound to lookupEnv.
func newEvalContext(lookupEnv func(string) (string, bool)) *hcl.EvalContext {
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	return &hcl.EvalContext{
		Functions: map[string]function.Function{
			"env": envFunc(lookupEnv),
		},
	}
}

// envFunc returns the HCL function env. env("NAME") is the value of the environment
// variable NAME as lookupEnv reports it, and an error when the variable is unset;
// env("NAME", "default") is the default when it is unset. A variable set to the empty
// string is set.
func envFunc(lookupEnv func(string) (string, bool)) function.Function {
	return function.New(&function.Spec{
		Description: "Returns the value of an environment variable, or the given default when it is unset.",
		Params: []function.Parameter{{
			Name:        "name",
			Description: "The environment variable's name.",
			Type:        cty.String,
		}},
		VarParam: &function.Parameter{
			Name:        "default",
			Description: "The value to use when the variable is unset.",
			Type:        cty.String,
		},
		Type:         function.StaticReturnType(cty.String),
		RefineResult: func(b *cty.RefinementBuilder) *cty.RefinementBuilder { return b.NotNull() },
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if len(args) > 2 {
				return cty.NilVal, function.NewArgErrorf(2,
					"env takes the variable's name and at most one default, e.g. env(\"NAME\", \"default\")")
			}
			name := args[0].AsString()
			if v, ok := lookupEnv(name); ok {
				return cty.StringVal(v), nil
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return cty.NilVal, function.NewArgErrorf(0,
				"environment variable %q is not set; set it, or give a default: env(%q, \"...\")", name, name)
		},
	})
}

// getenv returns the variable's value; unset and empty are the same to the overrides.
func getenv(lookupEnv func(string) (string, bool), name string) string {
	v, _ := lookupEnv(name)
	return v
}

// envDiag reports a bad environment override. It has no Subject: the value does not come
// from the file.
func envDiag(name, value, format string, args ...any) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("Invalid environment variable %s", name),
		Detail:   fmt.Sprintf("%s=%q: %s.", name, value, fmt.Sprintf(format, args...)),
	}
}

// applyEnv applies the seed's environment overrides other than STORAGE_BACKEND and
// DATABASE_URL, which selectStorage handles. A bad value leaves the file's value in place
// and adds a diagnostic.
func applyEnv(cfg *Config, lookupEnv func(string) (string, bool), d *decoder) {
	apiHost, apiPort := getenv(lookupEnv, "API_HOST"), getenv(lookupEnv, "API_PORT")
	if apiHost != "" || apiPort != "" {
		host, port, err := net.SplitHostPort(cfg.Host.Listen)
		if err != nil {
			host, port, _ = net.SplitHostPort(DefaultListen)
		}
		if apiHost != "" {
			h := apiHost
			if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
				h = h[1 : len(h)-1]
			}
			if err := checkHost(h); err != nil {
				d.add(hcl.Diagnostics{envDiag("API_HOST", apiHost, "%s", err)})
			} else {
				host = h
			}
		}
		if apiPort != "" {
			if err := checkPort(apiPort); err != nil {
				d.add(hcl.Diagnostics{envDiag("API_PORT", apiPort, "%s", err)})
			} else {
				port = apiPort
			}
		}
		if l := net.JoinHostPort(host, port); l != cfg.Host.Listen {
			cfg.Host.Listen, cfg.Host.ListenRange = l, hcl.Range{}
		}
	}

	if p := getenv(lookupEnv, "GOVERNANCE_POLICY"); p != "" {
		if !slices.Contains(Policies, p) {
			d.add(hcl.Diagnostics{envDiag("GOVERNANCE_POLICY", p, "the policy must be one of %s", oneOf(Policies))})
		} else {
			cfg.Governance.Policy = p
			cfg.Governance.PolicyRange = hcl.Range{}
		}
	}

	if s := getenv(lookupEnv, "FGW_ALPHA"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		switch {
		case err != nil:
			d.add(hcl.Diagnostics{envDiag("FGW_ALPHA", s, "not a number")})
		case math.IsNaN(v) || v < 0 || v > 1:
			d.add(hcl.Diagnostics{envDiag("FGW_ALPHA", s, "alpha must be between 0 and 1 inclusive")})
		default:
			cfg.RD.Alpha = v
		}
	}
	if s := getenv(lookupEnv, "FGW_EPSILON"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		switch {
		case err != nil:
			d.add(hcl.Diagnostics{envDiag("FGW_EPSILON", s, "not a number")})
		case math.IsNaN(v) || math.IsInf(v, 0) || v <= 0:
			d.add(hcl.Diagnostics{envDiag("FGW_EPSILON", s, "epsilon must be a finite number greater than 0")})
		default:
			cfg.RD.Epsilon = v
		}
	}
}

// checkHost accepts a host name or an IP address, without a port.
func checkHost(h string) error {
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if strings.Contains(h, ":") {
		return fmt.Errorf("give a host name or an IP address without a port; set the port with API_PORT")
	}
	if strings.ContainsAny(h, " \t\r\n/[]@?#%\\") {
		return fmt.Errorf("not a host name or an IP address")
	}
	return nil
}
