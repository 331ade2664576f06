package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	ooption "github.com/openai/openai-go/v3/option"
)

// chatMessage is one message of a conversation.
type chatMessage struct {
	Role    string // "system", "user" or "assistant"
	Content string
}

// chatRequest is what one attempt asks a model.
type chatRequest struct {
	// system is the system prompt (params.system, else the config's), sent before
	// the conversation.
	system string
	// messages is the conversation in order: system messages stay where they stand.
	messages    []chatMessage
	maxTokens   int
	temperature *float64
	stop        []string
	stream      bool
}

// size is the length of the request's text, for estimates.
func (r chatRequest) size() int {
	n := len(r.system)
	for _, m := range r.messages {
		n += len(m.Content)
	}
	return n
}

// answer is a model's complete answer.
type answer struct {
	text   string
	input  int64
	output int64
	// usageKnown is false when the provider reported no usage (some OpenAI-compatible
	// servers do not in streams).
	usageKnown bool
	// finish is "stop", "length", or the provider's own reason when it is another.
	finish string
}

// provider is one model at one provider, reached through its official SDK.
type provider interface {
	// complete asks for an answer, calling onText with each piece as it streams in (once
	// with the whole text when not streaming).
	complete(ctx context.Context, req chatRequest, onText func(string) error) (answer, error)
}

// newHTTPClient returns the client both SDKs use: no proxy from the environment (the
// plugin reads no URL from there), bounded connection set-up, and HTTP/2 when offered.
func newHTTPClient() *http.Client {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: limitedTransport{tr}, CheckRedirect: refuseRedirect}
}

// maxResponseBytes is the most the runner reads of one response, error bodies and
// streams included: a streamed answer of 100,000 tokens is about 25 MiB of events.
const maxResponseBytes = 64 << 20

// limitedTransport cuts every response body at maxResponseBytes, so that a server
// sending without end costs neither unbounded memory nor the whole attempt_timeout.
type limitedTransport struct{ http.RoundTripper }

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.RoundTripper.RoundTrip(req)
	if res != nil && res.Body != nil {
		res.Body = &limitedBody{ReadCloser: res.Body, left: maxResponseBytes}
	}
	return res, err
}

// limitedBody fails a read beyond its limit rather than ending quietly, so that a cut
// answer is never taken for a whole one.
type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, &malformedError{fmt.Sprintf("the answer is larger than %d MiB, the most the runner reads", maxResponseBytes>>20)}
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// redirectError is a redirect the runner refused to follow: the request, with its key,
// goes only to the configured base URL.
type redirectError struct {
	status   int
	location string
}

func (e *redirectError) Error() string {
	return fmt.Sprintf("redirected to %s; the runner follows no redirects: set base_url to the address that answers", e.location)
}

func refuseRedirect(req *http.Request, _ []*http.Request) error {
	status := 0
	if req.Response != nil {
		status = req.Response.StatusCode
	}
	return &redirectError{status: status, location: redactURL(req.URL.String())}
}

// newProvider builds the SDK client for t. Both SDKs are given every setting explicitly
// and told to read nothing from the environment; their own retries are off, since the
// runner retries with its own policy.
func newProvider(t target, hc *http.Client) provider {
	switch t.Provider {
	case providerAnthropic:
		opts := []aoption.RequestOption{
			aoption.WithoutEnvironmentDefaults(),
			aoption.WithHTTPClient(hc),
			aoption.WithBaseURL(t.BaseURL + "/"),
			aoption.WithMaxRetries(0),
		}
		if t.APIKey != "" {
			opts = append(opts, aoption.WithAPIKey(t.APIKey))
		}
		c := anthropic.NewClient(opts...)
		return &anthropicProvider{msgs: c.Messages, model: t.Model}
	default:
		// openai.NewClient would read OPENAI_* variables; the service built from explicit
		// options reads none.
		opts := []ooption.RequestOption{
			ooption.WithHTTPClient(hc),
			ooption.WithBaseURL(t.BaseURL + "/"),
			ooption.WithMaxRetries(0),
		}
		if t.APIKey != "" {
			opts = append(opts, ooption.WithAPIKey(t.APIKey))
		}
		return &openaiProvider{chat: openai.NewChatCompletionService(opts...), model: t.Model, compatible: t.Provider == providerCompatible}
	}
}

// openaiProvider speaks OpenAI's chat completions.
type openaiProvider struct {
	chat       openai.ChatCompletionService
	model      string
	compatible bool
}

func (p *openaiProvider) params(req chatRequest) openai.ChatCompletionNewParams {
	var msgs []openai.ChatCompletionMessageParamUnion
	if req.system != "" {
		msgs = append(msgs, openai.SystemMessage(req.system))
	}
	for _, m := range req.messages {
		switch m.Role {
		case "system":
			msgs = append(msgs, openai.SystemMessage(m.Content))
		case "assistant":
			msgs = append(msgs, openai.AssistantMessage(m.Content))
		default:
			msgs = append(msgs, openai.UserMessage(m.Content))
		}
	}
	params := openai.ChatCompletionNewParams{Model: openai.ChatModel(p.model), Messages: msgs}
	// OpenAI itself wants max_completion_tokens (reasoning models refuse max_tokens);
	// compatible servers (vLLM, llama-server, Ollama) know max_tokens.
	if p.compatible {
		params.MaxTokens = openai.Int(int64(req.maxTokens))
	} else {
		params.MaxCompletionTokens = openai.Int(int64(req.maxTokens))
	}
	if req.temperature != nil {
		params.Temperature = openai.Float(*req.temperature)
	}
	if len(req.stop) > 0 {
		params.Stop = openai.ChatCompletionNewParamsStopUnion{OfStringArray: req.stop}
	}
	return params
}

func (p *openaiProvider) complete(ctx context.Context, req chatRequest, onText func(string) error) (answer, error) {
	params := p.params(req)
	if !req.stream {
		res, err := p.chat.New(ctx, params)
		if err != nil {
			return answer{}, err
		}
		if len(res.Choices) == 0 {
			return answer{}, &malformedError{"the answer has no choices"}
		}
		a := answer{
			text: res.Choices[0].Message.Content, finish: normalFinish(res.Choices[0].FinishReason),
			input: res.Usage.PromptTokens, output: res.Usage.CompletionTokens, usageKnown: res.JSON.Usage.Valid(),
		}
		if a.text != "" {
			if err := onText(a.text); err != nil {
				return a, err
			}
		}
		return a, nil
	}
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := p.chat.NewStreaming(ctx, params)
	defer stream.Close()
	var a answer
	var text strings.Builder
	for stream.Next() {
		chunk := stream.Current()
		if chunk.JSON.Usage.Valid() && (chunk.Usage.PromptTokens > 0 || chunk.Usage.CompletionTokens > 0) {
			a.input, a.output, a.usageKnown = chunk.Usage.PromptTokens, chunk.Usage.CompletionTokens, true
		}
		for _, c := range chunk.Choices {
			if c.Index != 0 {
				continue
			}
			if s := c.Delta.Content; s != "" {
				text.WriteString(s)
				if err := onText(s); err != nil {
					a.text = text.String()
					return a, err
				}
			}
			if c.FinishReason != "" {
				a.finish = normalFinish(c.FinishReason)
			}
		}
	}
	a.text = text.String()
	if err := stream.Err(); err != nil {
		return a, err
	}
	if a.finish == "" {
		return a, &malformedError{"the stream ended without a finish reason"}
	}
	return a, nil
}

// anthropicProvider speaks Anthropic's messages API.
type anthropicProvider struct {
	msgs  anthropic.MessageService
	model string
}

// anthropicSplit shapes a request for Anthropic's messages API, which takes system text
// only as one top-level field: system is the system prompt and the system messages
// before the first user or assistant message, in order, joined by a blank line; turns
// are the rest. late is the index in req.messages of a system message after the
// conversation began, which the API has no place for, or -1; buildRequest refuses such
// a request for Anthropic, so that no system text is dropped.
func anthropicSplit(req chatRequest) (system string, turns []chatMessage, late int) {
	var parts []string
	if req.system != "" {
		parts = append(parts, req.system)
	}
	late = -1
	for i, m := range req.messages {
		switch {
		case m.Role != "system":
			turns = append(turns, m)
		case len(turns) == 0:
			parts = append(parts, m.Content)
		case late < 0:
			late = i
		}
	}
	return strings.Join(parts, "\n\n"), turns, late
}

func (p *anthropicProvider) params(req chatRequest) anthropic.MessageNewParams {
	system, turns, _ := anthropicSplit(req)
	var msgs []anthropic.MessageParam
	for _, m := range turns {
		if m.Role == "assistant" {
			msgs = append(msgs, anthropic.NewAssistantMessage(anthropic.NewTextBlock(m.Content)))
		} else {
			msgs = append(msgs, anthropic.NewUserMessage(anthropic.NewTextBlock(m.Content)))
		}
	}
	params := anthropic.MessageNewParams{Model: anthropic.Model(p.model), MaxTokens: int64(req.maxTokens), Messages: msgs}
	if system != "" {
		params.System = []anthropic.TextBlockParam{{Text: system}}
	}
	// Anthropic's API deprecated temperature and SDK v2 has no field for it: it is not
	// sent (the config warns about it).
	if len(req.stop) > 0 {
		params.StopSequences = req.stop
	}
	return params
}

func (p *anthropicProvider) complete(ctx context.Context, req chatRequest, onText func(string) error) (answer, error) {
	params := p.params(req)
	if !req.stream {
		msg, err := p.msgs.New(ctx, params)
		if err != nil {
			return answer{}, err
		}
		var text strings.Builder
		for _, b := range msg.Content {
			if b.Type == "text" {
				text.WriteString(b.Text)
			}
		}
		a := answer{
			text: text.String(), finish: normalFinish(string(msg.StopReason)),
			input: msg.Usage.InputTokens, output: msg.Usage.OutputTokens, usageKnown: msg.JSON.Usage.Valid(),
		}
		if a.text != "" {
			if err := onText(a.text); err != nil {
				return a, err
			}
		}
		return a, nil
	}
	stream := p.msgs.NewStreaming(ctx, params)
	defer stream.Close()
	var a answer
	var text strings.Builder
	stopped := false
	for stream.Next() {
		ev := stream.Current()
		switch ev.Type {
		case "message_start":
			a.input, a.output, a.usageKnown = ev.Message.Usage.InputTokens, ev.Message.Usage.OutputTokens, true
		case "content_block_delta":
			if ev.Delta.Type == "text_delta" && ev.Delta.Text != "" {
				text.WriteString(ev.Delta.Text)
				if err := onText(ev.Delta.Text); err != nil {
					a.text = text.String()
					return a, err
				}
			}
		case "message_delta":
			if ev.Delta.StopReason != "" {
				a.finish = normalFinish(string(ev.Delta.StopReason))
			}
			// The final output count; input arrives again only in some versions.
			a.output = ev.Usage.OutputTokens
			if ev.Usage.InputTokens > 0 {
				a.input = ev.Usage.InputTokens
			}
		case "message_stop":
			stopped = true
		}
	}
	a.text = text.String()
	if err := stream.Err(); err != nil {
		return a, err
	}
	if !stopped {
		return a, &malformedError{"the stream ended before message_stop"}
	}
	return a, nil
}

// normalFinish maps the providers' finish reasons to "stop" and "length".
func normalFinish(reason string) string {
	switch reason {
	case "stop", "end_turn", "stop_sequence":
		return "stop"
	case "length", "max_tokens":
		return "length"
	}
	return reason
}

// malformedError is an answer that broke the provider's own format.
type malformedError struct{ what string }

func (e *malformedError) Error() string { return e.what }
