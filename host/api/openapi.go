package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/limitgraph/limit/host/execution"
	"github.com/limitgraph/limit/host/governance"
	"github.com/limitgraph/limit/sdk/storage"
)

// route is one registered operation; the OpenAPI document is generated from these, so it
// cannot drift from what the server serves.
type route struct {
	Method  string
	Path    string // canonical, without the /v1 prefix
	Summary string
	Tag     string
	// Request and Response are example values of the body types (nil for none).
	Request  any
	Response any
	Status   int
	// Query lists query parameters.
	Query []string
	// Stream tells that the route can answer text/event-stream.
	Stream bool
	// Binary names the content type of a non-JSON response.
	Binary string
	// Legacy tells that the seed's unversioned path is also served.
	Legacy bool
	// Errors are the problem statuses the operation answers beyond those every operation
	// of its kind does (see problemStatuses).
	Errors []int
	// Operator keeps the route to operators' tokens: a user token gets 403.
	Operator bool
	// Scraper lets a scraper's token (api.token_file's metrics role) make the request too;
	// it makes no other.
	Scraper bool
}

// queryParams are the schemas of the query parameters that are not free strings.
var queryParams = map[string]map[string]any{
	"per_page":        {"type": "integer", "minimum": 1, "maximum": storage.MaxScanLimit, "default": 50},
	"include_deleted": {"type": "boolean", "default": false},
	"owner_gone": {"type": "boolean", "default": false,
		"description": "an operator's delete of a session another host runs (its owner_node), that host gone for good: the record says deleted, the gone host's files stay on its disk"},
	"next_token": {"type": "string", "description": "the next_token of the page before, unchanged; it continues only the listing that gave it"},
	"owner": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$",
		"description": "only the sessions of this user (an operator's token); a user's token reaches its own sessions alone, and naming another user is 403"},
}

// problemStatuses are the problem statuses rt answers, by what they mean: those of every
// operation that takes a body or query parameters or names a resource, and its own.
func problemStatuses(rt route) map[int]string {
	out := map[int]string{400: "a query parameter is given: this operation takes none"}
	if rt.Method != "GET" {
		out[400] = "the body is malformed, not UTF-8 JSON, or a field is unknown, missing or invalid; or a query parameter is given"
		out[408] = "the body was not received within api.read_timeout"
		out[413] = "the body is over api.max_body_bytes"
		out[415] = "the body's Content-Type is not one read as JSON (application/json, application/*+json, text/plain, application/x-www-form-urlencoded or none; from a browser, with Origin or Sec-Fetch-Mode, not text/plain or a form) or its Content-Encoding not identity"
	}
	if len(rt.Query) > 0 {
		out[400] = "a query parameter is unknown, invalid or given twice, or next_token belongs to another listing"
	}
	if strings.Contains(rt.Path, "{") {
		out[404] = "no such " + strings.TrimSuffix(strings.Split(strings.TrimPrefix(rt.Path, "/"), "/")[0], "s")
	}
	if rt.Operator {
		out[403] = "the token is a user's: this operation needs an operator's token"
	}
	for _, code := range rt.Errors {
		if _, ok := out[code]; !ok {
			out[code] = http.StatusText(code)
		}
	}
	return out
}

// scraperRefused is the 403 every route but the metrics and the health checks answers a
// metrics scraper's token (TOKEN :metrics in api.token_file).
const scraperRefused = "the token is a metrics scraper's (:metrics), which reaches only GET /metrics and the health checks"

// openAPI builds an OpenAPI 3.1 document of the routes; with bearer, every route but the
// health check requires a bearer token.
func openAPI(version string, routes []route, bearer bool) map[string]any {
	schemas := map[string]any{}
	types := map[string]reflect.Type{}
	paths := map[string]any{}
	for _, rt := range routes {
		p := "/v1" + rt.Path
		item, _ := paths[p].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[p] = item
		}
		op := map[string]any{
			"summary":     rt.Summary,
			"operationId": operationID(rt),
			"tags":        []string{rt.Tag},
		}
		var params []any
		for _, seg := range strings.Split(rt.Path, "/") {
			if strings.HasPrefix(seg, "{") {
				params = append(params, map[string]any{
					"name": strings.Trim(seg, "{}"), "in": "path", "required": true, "schema": map[string]any{"type": "string"},
				})
			}
		}
		for _, q := range rt.Query {
			schema := queryParams[q]
			if schema == nil {
				schema = map[string]any{"type": "string"}
			}
			params = append(params, map[string]any{"name": q, "in": "query", "required": false, "schema": schema})
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.Request != nil {
			op["requestBody"] = map[string]any{
				"required": true,
				"content":  map[string]any{"application/json": map[string]any{"schema": (&schemaGen{schemas: schemas, request: true, types: types}).ref(reflect.TypeOf(rt.Request))}},
			}
		}
		status := rt.Status
		if status == 0 {
			status = 200
		}
		resp := map[string]any{"description": "success"}
		switch {
		case rt.Binary != "":
			resp["content"] = map[string]any{rt.Binary: map[string]any{"schema": map[string]any{"type": "string", "contentEncoding": "binary"}}}
		case rt.Response != nil:
			content := map[string]any{"application/json": map[string]any{"schema": schemaRef(reflect.TypeOf(rt.Response), schemas, types)}}
			if rt.Stream {
				content["text/event-stream"] = map[string]any{"schema": map[string]any{"type": "string"}}
			}
			resp["content"] = content
		}
		problem := map[string]any{"description": "error", "content": map[string]any{
			"application/problem+json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Problem"}},
		}}
		responses := map[string]any{itoa(status): resp, "default": problem}
		for code, why := range problemStatuses(rt) {
			responses[itoa(code)] = map[string]any{"description": why, "content": problem["content"]}
		}
		switch rt.Path {
		case "/health":
			responses["503"] = map[string]any{"description": "a host plugin is unhealthy, or the data_dir's disk is below host.min_free_disk (status degraded)", "content": resp["content"]}
		case "/health/ready":
			responses["503"] = map[string]any{"description": "the host cannot serve executions (status unavailable, with reasons), or is shutting down", "content": resp["content"]}
		}
		if bearer && !isHealthPath(rt.Path) {
			responses["401"] = map[string]any{"description": "no valid bearer token", "content": problem["content"]}
			if rt.Path != "/metrics" {
				why := scraperRefused
				if prev, ok := responses["403"].(map[string]any); ok {
					why = prev["description"].(string) + "; or " + why
				}
				responses["403"] = map[string]any{"description": why, "content": problem["content"]}
			}
		} else if bearer {
			op["security"] = []any{} // open to probes
		}
		op["responses"] = responses
		item[strings.ToLower(rt.Method)] = op
	}
	str := map[string]any{"type": "string"}
	props := map[string]any{
		"type": str, "title": str,
		"status": map[string]any{"type": "integer"}, "detail": str,
		"instance": str,
		"trace_id": map[string]any{"type": "string", "description": "403 (a blocked execution), 409 (a refused merge), 503 with record_pending and 500 with record_lost: the trace"},
		"policy":   map[string]any{"type": "string", "description": "403 and 409: the governance policy that decided"},
		"reasons":  map[string]any{"type": "array", "items": str, "description": "409: every reason the merge was refused"},
		"flags": map[string]any{"type": "array", "items": schemaRef(reflect.TypeOf(governance.Flag{}), schemas, types),
			"description": "403: the flags that blocked the execution; 409: flags the refusal raised without writing them; 503 with record_pending and 500 with record_lost: the execution's flags, as its result has them"},
		"flag_names":   map[string]any{"type": "array", "items": str, "description": "403: the blocking flags' names"},
		"field":        map[string]any{"type": "string", "description": "400 from the RD routes: the field at fault"},
		"trace_status": map[string]any{"type": "string", "description": "409 of a merge of a trace merged already: its status, merged (status is the problem's)"},
		"damaged":      map[string]any{"type": "array", "items": str, "description": "409 of an export: every trace of its scope that does not verify (none is exported)"},
		"points":       map[string]any{"type": "integer", "description": "422 from GET /v1/rd/knee: the refinement points there are"},
		"retry_after":  map[string]any{"type": "integer", "description": "the error event of a stream: seconds to wait before retrying"},
		"record_pending": map[string]any{"type": "boolean", "description": "503 (no Retry-After) of an execution that ran but whose trace the storage did not take yet: " +
			"it is recorded once the storage is back; do not run it again. The problem carries what the execution's result would have (stdout, stderr, output, exit_code...)"},
		"record_lost": map[string]any{"type": "boolean", "description": "500 (no Retry-After) of an execution that ran but whose trace the storage did not take and whose outcome could not be kept to store later: " +
			"its record is lost; do not run it again. The problem carries what the execution's result would have, as with record_pending"},
		"execution_status": map[string]any{"type": "string", "description": "503 with record_pending, 500 with record_lost: the execution's status (its result's status; status is the problem's)"},
	}
	// The members of an execution's result the record_pending and record_lost problems
	// carry besides.
	result := (&schemaGen{schemas: schemas, types: types}).structSchema(reflect.TypeOf(execution.Result{}))
	for name, schema := range result["properties"].(map[string]any) {
		if _, ok := props[name]; !ok {
			schema.(map[string]any)["description"] = "503 with record_pending, 500 with record_lost: the execution's, as its result has it"
			props[name] = schema
		}
	}
	schemas["Problem"] = map[string]any{
		"type":        "object",
		"description": "RFC 9457 problem details, with the extension members of the problems that carry them",
		"properties":  props,
		"required":    []string{"type", "title", "status"},
	}
	components := map[string]any{"schemas": schemas}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":   "LIMIT host API",
			"version": version,
			"description": "Sessions, executions, traces with verifiable provenance, governance and RD. " +
				legacyNote(routes) + " Errors are RFC 9457 problem+json.",
		},
		"paths":      paths,
		"components": components,
	}
	if bearer {
		components["securitySchemes"] = map[string]any{
			"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "a token from the host's api.token_file"},
		}
		doc["security"] = []any{map[string]any{"bearer": []any{}}}
	}
	return doc
}

// legacyNote says which routes are also served without the /v1 prefix.
func legacyNote(routes []route) string {
	var not []string
	for _, rt := range routes {
		if !rt.Legacy {
			not = append(not, "/v1"+rt.Path)
		}
	}
	if len(not) == 0 {
		return "Every route is also served without the /v1 prefix, for the seed's clients."
	}
	return "Every route but " + strings.Join(not, " and ") + " is also served without the /v1 prefix, for the seed's clients."
}

// schemaExtra is a request type whose schema needs more than its fields say (which
// combinations of optional fields it needs): its members are added to the type's schema.
type schemaExtra interface{ openAPIExtra() map[string]any }

func operationID(rt route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.Method))
	for _, seg := range strings.Split(rt.Path, "/") {
		seg = strings.Trim(seg, "{}")
		for _, part := range strings.FieldsFunc(seg, func(r rune) bool { return r == '_' || r == '-' || r == '.' }) {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

var (
	timeType = reflect.TypeOf(time.Time{})
	rawType  = reflect.TypeOf(json.RawMessage(nil))
)

// schemaRef returns a JSON Schema for t, registering named struct types as components.
func schemaRef(t reflect.Type, schemas map[string]any, types map[string]reflect.Type) map[string]any {
	return (&schemaGen{schemas: schemas, types: types}).ref(t)
}

// schemaGen writes schemas into schemas. For a request body (request), a field is required
// only when tagged api:"required" (most have defaults); for a response, every field that
// is always present (no omitempty) is. Request schemas are named apart (suffix "Input"
// unless the type's name ends in "Request"), so a type used both ways gets both.
type schemaGen struct {
	schemas map[string]any
	request bool
	// types records which Go type each schema name was given to, so that two types
	// never share a name (the second one takes its package's name as a prefix).
	types map[string]reflect.Type
}

// schemaName names a Go struct type's schema: its name capitalised ("flagRequest" →
// "FlagRequest"), its package's name in front unless it is the API's own or the type's
// name starts with it ("session.CreateRequest" → "SessionCreateRequest", "session.Session"
// → "Session", "rd.RDCurve" → "RDCurve").
func schemaName(t reflect.Type, qualified bool) string {
	name := strings.ToUpper(t.Name()[:1]) + t.Name()[1:]
	pkg := t.PkgPath()
	pkg = pkg[strings.LastIndex(pkg, "/")+1:]
	if pkg == "" || (!qualified && (pkg == "api" || strings.HasPrefix(strings.ToLower(name), strings.ToLower(pkg)))) {
		return name
	}
	return strings.ToUpper(pkg[:1]) + pkg[1:] + name
}

func (g *schemaGen) ref(t reflect.Type) map[string]any {
	schemas := g.schemas
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawType || t.Kind() == reflect.Interface:
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}
		}
		return map[string]any{"type": "array", "items": g.ref(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.ref(t.Elem())}
	case reflect.Struct:
		name := t.Name()
		if name == "" {
			return g.structSchema(t)
		}
		suffix := ""
		if g.request && !strings.HasSuffix(name, "Request") {
			suffix = "Input"
		}
		name = schemaName(t, false) + suffix
		if prev, ok := g.types[name]; ok && prev != t {
			name = schemaName(t, true) + suffix
		}
		g.types[name] = t
		if _, ok := schemas[name]; !ok {
			schemas[name] = map[string]any{} // placeholder against recursion
			schemas[name] = g.structSchema(t)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

func (g *schemaGen) structSchema(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				ft := f.Type
				for ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft)
					continue
				}
			}
			if name == "" {
				name = f.Name
			}
			props[name] = g.ref(f.Type)
			if g.request {
				if f.Tag.Get("api") == "required" {
					required = append(required, name)
				}
			} else if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") && f.Type.Kind() != reflect.Pointer {
				required = append(required, name)
			}
		}
	}
	walk(t)
	s := map[string]any{"type": "object", "properties": props}
	if x, ok := reflect.New(t).Interface().(schemaExtra); ok {
		for k, v := range x.openAPIExtra() {
			s[k] = v
		}
	}
	if len(required) > 0 {
		sort.Strings(required)
		s["required"] = required
	}
	return s
}
