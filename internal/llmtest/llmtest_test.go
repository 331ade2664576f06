package llmtest

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	ooption "github.com/openai/openai-go/v3/option"
)

// The servers are checked with the official SDKs themselves: what they accept is the
// wire format.

func openaiChat(s *Server, key string) openai.ChatCompletionService {
	return openai.NewChatCompletionService(ooption.WithBaseURL(s.BaseURL()+"/"), ooption.WithAPIKey(key), ooption.WithMaxRetries(0))
}

func TestOpenAIFormat(t *testing.T) {
	s := NewOpenAI(t, "k")
	chat := openaiChat(s, "k")
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{Model: "m", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello there")}}

	s.Push(Step{Text: "one two", InputTokens: 4, OutputTokens: 2, FinishReason: "length"})
	res, err := chat.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if res.Choices[0].Message.Content != "one two" || res.Choices[0].FinishReason != "length" ||
		res.Usage.PromptTokens != 4 || res.Usage.CompletionTokens != 2 || res.Model != "m" {
		t.Errorf("answer: %+v", res)
	}

	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	s.Push(Step{Text: "a b c"})
	st := chat.NewStreaming(ctx, params)
	var text []string
	var usage int64
	finish := ""
	for st.Next() {
		c := st.Current()
		for _, ch := range c.Choices {
			if ch.Delta.Content != "" {
				text = append(text, ch.Delta.Content)
			}
			if ch.FinishReason != "" {
				finish = ch.FinishReason
			}
		}
		usage += c.Usage.CompletionTokens
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(text, "|") != "a |b |c" || finish != "stop" || usage != 3 {
		t.Errorf("stream: %q finish %q usage %d", text, finish, usage)
	}

	s.Push(Step{Status: 429, ErrorMessage: "slow", Header: map[string]string{"Retry-After": "7"}})
	_, err = chat.New(ctx, params)
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.StatusCode != 429 || oe.Message != "slow" || oe.Response.Header.Get("Retry-After") != "7" {
		t.Errorf("429: %v", err)
	}
	wrong := openaiChat(s, "wrong")
	_, err = wrong.New(ctx, params)
	if !errors.As(err, &oe) || oe.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong key: %v", err)
	}
	reqs := s.Requests()
	if len(reqs) != 4 || reqs[0].Path != "/v1/chat/completions" || reqs[0].Model != "m" || reqs[0].Stream || !reqs[1].Stream ||
		reqs[0].Header.Get("Authorization") != "Bearer k" {
		t.Errorf("requests: %+v", reqs)
	}
}

func TestAnthropicFormat(t *testing.T) {
	s := NewAnthropic(t, "k")
	c := anthropic.NewClient(aoption.WithoutEnvironmentDefaults(), aoption.WithBaseURL(s.BaseURL()+"/"), aoption.WithAPIKey("k"), aoption.WithMaxRetries(0))
	ctx := context.Background()
	params := anthropic.MessageNewParams{Model: "claude", MaxTokens: 10, Messages: []anthropic.MessageParam{
		anthropic.NewUserMessage(anthropic.NewTextBlock("hello")),
	}}
	s.Push(Step{Text: "hi you", InputTokens: 3, OutputTokens: 2})
	msg, err := c.Messages.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) != 1 || msg.Content[0].Text != "hi you" || msg.StopReason != "end_turn" || msg.Usage.InputTokens != 3 {
		t.Errorf("message: %+v", msg)
	}

	s.Push(Step{Text: "x y", FinishReason: "length", OutputTokens: 9})
	st := c.Messages.NewStreaming(ctx, params)
	var text, types []string
	var out int64
	var stop string
	for st.Next() {
		ev := st.Current()
		types = append(types, ev.Type)
		switch ev.Type {
		case "content_block_delta":
			text = append(text, ev.Delta.Text)
		case "message_delta":
			stop, out = string(ev.Delta.StopReason), ev.Usage.OutputTokens
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(text, "|") != "x |y" || stop != "max_tokens" || out != 9 || types[0] != "message_start" || types[len(types)-1] != "message_stop" {
		t.Errorf("stream: %q %q %d %v", text, stop, out, types)
	}

	s.Push(Step{Status: 529, ErrorMessage: "Overloaded"})
	_, err = c.Messages.New(ctx, params)
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 529 || !strings.Contains(ae.Error(), "Overloaded") {
		t.Errorf("529: %v", err)
	}
	if reqs := s.Requests(); len(reqs) != 3 || reqs[0].Path != "/v1/messages" || reqs[0].Header.Get("Anthropic-Version") == "" {
		t.Errorf("requests: %+v", reqs)
	}
}

func TestSplitWords(t *testing.T) {
	if got := strings.Join(SplitWords("a bb  c"), "|"); got != "a |bb | |c" {
		t.Errorf("SplitWords: %q", got)
	}
	if SplitWords("") != nil {
		t.Error("SplitWords of empty text")
	}
}
