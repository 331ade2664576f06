// Package llmtest runs local HTTP servers that speak the wire formats of hosted model
// APIs — OpenAI's chat completions (also spoken by vLLM, llama-server and Ollama) and
// Anthropic's messages, both as JSON and as server-sent event streams — so tests can
// drive the official SDKs and the runner-llm plugin against them without a network.
//
// A test scripts the answers: each request takes the next Step pushed with Push, or the
// default Step when none is queued. Every request is recorded with its headers and body.
package llmtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Provider names a wire format.
type Provider string

// The wire formats served.
const (
	OpenAI    Provider = "openai"
	Anthropic Provider = "anthropic"
)

// Step is a scripted answer to one request.
type Step struct {
	// Status, when set and not 200, answers with that HTTP status and an error body in the
	// provider's format carrying ErrorMessage.
	Status       int
	ErrorMessage string
	// Header is added to the answer (e.g. "Retry-After": "1").
	Header map[string]string

	// Text is the answer. A streaming request gets it in Chunks (when set, they must
	// join to Text; by default Text is split after each space).
	Text   string
	Chunks []string
	// InputTokens and OutputTokens go into the usage; zero counts the request's words
	// and the chunks.
	InputTokens, OutputTokens int
	// FinishReason is "stop" (the default) or "length", in the provider's spelling.
	FinishReason string
	// ChunkDelay is slept between streamed chunks.
	ChunkDelay time.Duration

	// Delay is slept before answering, unless the request ends first.
	Delay time.Duration
	// Hang never answers: the server waits until the client gives up.
	Hang bool
	// Raw, when set, is written as the whole body with RawType (default
	// "application/json") and status 200: for malformed answers.
	Raw, RawType string
	// EchoCredentials puts the credentials the request carried into the error message,
	// as a careless proxy might, to check that a client never shows them.
	EchoCredentials bool
}

// Request is a request the server received.
type Request struct {
	Time   time.Time
	Method string
	Path   string
	Header http.Header
	Body   []byte
	// Decoded from Body.
	Model  string
	Stream bool
	JSON   map[string]any
}

// Server is a scripted provider API on a loopback address.
type Server struct {
	*httptest.Server
	provider Provider
	// APIKey, when set, is the only key accepted; other requests get 401.
	apiKey string

	mu       sync.Mutex
	steps    []Step
	def      Step
	requests []Request
}

// NewOpenAI starts a server speaking OpenAI's chat completions API at /v1/chat/completions.
// apiKey, when not empty, is required as "Authorization: Bearer <key>". It is closed at
// the test's cleanup.
func NewOpenAI(t testing.TB, apiKey string) *Server { return start(t, OpenAI, apiKey) }

// NewAnthropic starts a server speaking Anthropic's messages API at /v1/messages.
// apiKey, when not empty, is required as the x-api-key header.
func NewAnthropic(t testing.TB, apiKey string) *Server { return start(t, Anthropic, apiKey) }

func start(t testing.TB, p Provider, apiKey string) *Server {
	s := &Server{provider: p, apiKey: apiKey, def: Step{Text: "Hello from the test server."}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// BaseURL is what a client takes as its base URL: ".../v1" for OpenAI (the SDK appends
// "chat/completions"), the server's root for Anthropic (the SDK appends "v1/messages").
func (s *Server) BaseURL() string {
	if s.provider == OpenAI {
		return s.URL + "/v1"
	}
	return s.URL
}

// Push queues steps, answered in order before the default.
func (s *Server) Push(steps ...Step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.steps = append(s.steps, steps...)
}

// SetDefault sets the answer used when no step is queued.
func (s *Server) SetDefault(st Step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.def = st
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

func (s *Server) next() Step {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.steps) == 0 {
		return s.def
	}
	st := s.steps[0]
	s.steps = s.steps[1:]
	return st
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := Request{Time: time.Now(), Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
	_ = json.Unmarshal(body, &req.JSON)
	req.Model, _ = req.JSON["model"].(string)
	req.Stream, _ = req.JSON["stream"].(bool)
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()

	want := "/v1/chat/completions"
	if s.provider == Anthropic {
		want = "/v1/messages"
	}
	if r.Method != http.MethodPost || r.URL.Path != want {
		s.writeError(w, http.StatusNotFound, fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path), nil)
		return
	}
	st := s.next()
	if s.apiKey != "" && credentials(r) != s.apiKey {
		msg := "invalid x-api-key"
		if s.provider == OpenAI {
			msg = "Incorrect API key provided."
		}
		if st.EchoCredentials {
			msg += " You sent: " + credentials(r)
		}
		s.writeError(w, http.StatusUnauthorized, msg, nil)
		return
	}
	if st.Hang {
		<-r.Context().Done()
		return
	}
	if st.Delay > 0 && !sleep(r.Context(), st.Delay) {
		return
	}
	if st.Status != 0 && st.Status != http.StatusOK {
		msg := st.ErrorMessage
		if msg == "" {
			msg = http.StatusText(st.Status)
		}
		if st.EchoCredentials {
			msg += " (credentials: " + credentials(r) + ")"
		}
		s.writeError(w, st.Status, msg, st.Header)
		return
	}
	for k, v := range st.Header {
		w.Header().Set(k, v)
	}
	if st.Raw != "" {
		ct := st.RawType
		if ct == "" {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		io.WriteString(w, st.Raw)
		return
	}
	ans := s.answer(st, req)
	if req.Stream {
		s.stream(w, r, req, ans)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s.completion(ans))
}

// credentials returns what the request authenticates with.
func credentials(r *http.Request) string {
	if k := r.Header.Get("X-Api-Key"); k != "" {
		return k
	}
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// answer is a step resolved against the request.
type answer struct {
	model         string
	text          string
	chunks        []string
	input, output int
	finish        string
	chunkDelay    time.Duration
}

func (s *Server) answer(st Step, req Request) answer {
	a := answer{model: req.Model, text: st.Text, chunks: st.Chunks, input: st.InputTokens, output: st.OutputTokens, chunkDelay: st.ChunkDelay}
	if a.chunks == nil {
		a.chunks = SplitWords(st.Text)
	}
	if a.input == 0 {
		a.input = max(1, len(strings.Fields(string(req.Body)))/2)
	}
	if a.output == 0 {
		a.output = len(a.chunks)
	}
	a.finish = st.FinishReason
	if a.finish == "" {
		a.finish = "stop"
	}
	if s.provider == Anthropic {
		a.finish = map[string]string{"stop": "end_turn", "length": "max_tokens"}[a.finish]
	}
	return a
}

// SplitWords splits text after each space, keeping the spaces: the default chunks.
func SplitWords(text string) []string {
	var out []string
	for text != "" {
		i := strings.IndexByte(text, ' ')
		if i < 0 {
			out = append(out, text)
			break
		}
		out = append(out, text[:i+1])
		text = text[i+1:]
	}
	return out
}

func (s *Server) completion(a answer) any {
	if s.provider == Anthropic {
		return map[string]any{
			"id": "msg_test", "type": "message", "role": "assistant", "model": a.model,
			"content":       []any{map[string]any{"type": "text", "text": a.text}},
			"stop_reason":   a.finish,
			"stop_sequence": nil,
			"usage":         map[string]any{"input_tokens": a.input, "output_tokens": a.output},
		}
	}
	return map[string]any{
		"id": "chatcmpl-test", "object": "chat.completion", "created": time.Now().Unix(), "model": a.model,
		"choices": []any{map[string]any{
			"index": 0, "message": map[string]any{"role": "assistant", "content": a.text, "refusal": nil},
			"finish_reason": a.finish, "logprobs": nil,
		}},
		"usage": map[string]any{"prompt_tokens": a.input, "completion_tokens": a.output, "total_tokens": a.input + a.output},
	}
}

// stream writes the answer as server-sent events in the provider's format.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, req Request, a answer) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	flusher, _ := w.(http.Flusher)
	send := func(event string, data any) {
		b, _ := json.Marshal(data)
		if event != "" {
			fmt.Fprintf(w, "event: %s\n", event)
		}
		fmt.Fprintf(w, "data: %s\n\n", b)
		if flusher != nil {
			flusher.Flush()
		}
	}
	pause := func() bool {
		return a.chunkDelay <= 0 || sleep(r.Context(), a.chunkDelay)
	}
	if s.provider == Anthropic {
		send("message_start", map[string]any{"type": "message_start", "message": map[string]any{
			"id": "msg_test", "type": "message", "role": "assistant", "model": a.model, "content": []any{},
			"stop_reason": nil, "stop_sequence": nil,
			"usage": map[string]any{"input_tokens": a.input, "output_tokens": 1},
		}})
		send("content_block_start", map[string]any{"type": "content_block_start", "index": 0,
			"content_block": map[string]any{"type": "text", "text": ""}})
		send("ping", map[string]any{"type": "ping"})
		for _, c := range a.chunks {
			if !pause() {
				return
			}
			send("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
				"delta": map[string]any{"type": "text_delta", "text": c}})
		}
		send("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
		send("message_delta", map[string]any{"type": "message_delta",
			"delta": map[string]any{"stop_reason": a.finish, "stop_sequence": nil},
			"usage": map[string]any{"output_tokens": a.output}})
		send("message_stop", map[string]any{"type": "message_stop"})
		return
	}
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{
			"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": time.Now().Unix(), "model": a.model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": nil}},
		}
	}
	send("", chunk(map[string]any{"role": "assistant", "content": ""}, nil))
	for _, c := range a.chunks {
		if !pause() {
			return
		}
		send("", chunk(map[string]any{"content": c}, nil))
	}
	send("", chunk(map[string]any{}, a.finish))
	// OpenAI sends the usage, in a last chunk without choices, only when asked to.
	if opts, _ := req.JSON["stream_options"].(map[string]any); opts["include_usage"] == true {
		send("", map[string]any{
			"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": time.Now().Unix(), "model": a.model,
			"choices": []any{},
			"usage":   map[string]any{"prompt_tokens": a.input, "completion_tokens": a.output, "total_tokens": a.input + a.output},
		})
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}

func (s *Server) writeError(w http.ResponseWriter, status int, msg string, header map[string]string) {
	for k, v := range header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if s.provider == Anthropic {
		typ := map[int]string{
			400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
			413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error",
		}[status]
		if typ == "" {
			typ = "api_error"
		}
		json.NewEncoder(w).Encode(map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": msg}})
		return
	}
	typ := map[int]string{400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_exceeded"}[status]
	if typ == "" {
		typ = "server_error"
	}
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": strconv.Itoa(status)}})
}
