package api

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/limitgraph/limit/internal/clip"
)

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Extensions are merged into the top-level object.
	Extensions map[string]any `json:"-"`
}

// MarshalJSON writes the problem with its extension members at the top level.
func (p Problem) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(p.Extensions)+5)
	for k, v := range p.Extensions {
		m[k] = v
	}
	m["type"] = p.Type
	m["title"] = p.Title
	m["status"] = p.Status
	if p.Detail != "" {
		m["detail"] = p.Detail
	}
	if p.Instance != "" {
		m["instance"] = p.Instance
	}
	return json.Marshal(m)
}

// maxInstanceBytes bounds a problem's instance: a longer request path (a client may send
// megabytes of one) is left out rather than echoed, as a cut one would name another path.
const maxInstanceBytes = 1024

// instance is the problem's instance for r: its path as the client escaped it, a valid URI
// reference (the decoded path may hold control characters, or "//../.." that read as
// something else), or "" when it is longer than maxInstanceBytes.
func instance(r *http.Request) string {
	p := r.URL.EscapedPath()
	if len(p) > maxInstanceBytes {
		return ""
	}
	return p
}

// shownPath is r's path as a detail quotes it: escaped, and at most 200 bytes of it.
func shownPath(r *http.Request) string { return clip.Marked(r.URL.EscapedPath(), 200) }

// writeProblem answers with an RFC 9457 problem+json body.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, detail string, ext map[string]any) {
	p := Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail, Extensions: ext}
	if r != nil {
		p.Instance = instance(r)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeJSON answers with a JSON body, indented. A value that cannot be encoded (a NaN or
// an infinity a computation left in it) answers 500 problem+json, not an empty 200.
func writeJSON(w http.ResponseWriter, status int, v any) { writeJSONBody(w, status, v, true) }

// writeCompactJSON is writeJSON without indentation, for answers that can be large (an FGW
// plan of n×m numbers, where indentation would be most of the bytes).
func writeCompactJSON(w http.ResponseWriter, status int, v any) {
	writeJSONBody(w, status, v, false)
}

func writeJSONBody(w http.ResponseWriter, status int, v any, indent bool) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if indent {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(v); err != nil {
		writeProblem(w, nil, http.StatusInternalServerError, "the answer could not be encoded: "+err.Error(), nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// statusRecorder captures what a handler writes without sending it: ServeMux's built-in
// 404 and 405 (answered as problem+json instead of plain text), or the problem fail would
// answer (an SSE error event).
type statusRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return s.body.Write(b) }
func (s *statusRecorder) WriteHeader(code int)        { s.status = code }
