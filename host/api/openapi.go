package api

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"time"
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
}

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
			params = append(params, map[string]any{"name": q, "in": "query", "required": false, "schema": map[string]any{"type": "string"}})
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
		if bearer && rt.Path != "/health" {
			responses["401"] = map[string]any{"description": "no valid bearer token", "content": problem["content"]}
		} else if bearer {
			op["security"] = []any{} // open to probes
		}
		op["responses"] = responses
		item[strings.ToLower(rt.Method)] = op
	}
	schemas["Problem"] = map[string]any{
		"type": "object",
		"properties": map[string]any{
			"type": map[string]any{"type": "string"}, "title": map[string]any{"type": "string"},
			"status": map[string]any{"type": "integer"}, "detail": map[string]any{"type": "string"},
			"instance": map[string]any{"type": "string"},
		},
		"required": []string{"type", "title", "status"},
	}
	components := map[string]any{"schemas": schemas}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":   "LIMIT host API",
			"version": version,
			"description": "Sessions, executions, traces with verifiable provenance, governance and RD. " +
				"Every route is also served without the /v1 prefix for the seed's clients. Errors are RFC 9457 problem+json.",
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
	if len(required) > 0 {
		sort.Strings(required)
		s["required"] = required
	}
	return s
}
