package main

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/ardanlabs/jinja"
	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/limitgraph/limit/internal/describe"
)

// chatMessage is one message of params.messages.
type chatMessage struct {
	Role    string
	Content string
}

// execParams are a request's parameters, defaults applied.
type execParams struct {
	sampling  sampling
	stop      []string
	ignoreEOS bool
	// messages, when set, make the request a chat: the model's chat template turns them
	// into the prompt.
	messages []chatMessage
}

// paramDocs lists the parameters an execution accepts, for the error about an unknown one.
var paramDocs = map[string]string{
	"messages":    "list of {role, content} objects: a chat, formatted with the model's chat template",
	"max_tokens":  "most tokens to generate",
	"temperature": "sampling temperature, 0 for greedy",
	"top_p":       "nucleus sampling threshold",
	"top_k":       "sample from the k most likely tokens, 0 for all",
	"seed":        "sampling seed, -1 for a fresh one",
	"stop":        "a string or list of strings that end the generation (not included in the output)",
	"ignore_eos":  "keep generating past the end-of-generation token, up to max_tokens",
}

// parseParams checks a request's params against the defaults of the config.
func parseParams(p map[string]any, def sampling) (execParams, error) {
	ep := execParams{sampling: def}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := p[k]
		var err error
		switch k {
		case "max_tokens":
			ep.sampling.MaxTokens, err = wholeParam(k, v, 1, 1<<20)
		case "top_k":
			ep.sampling.TopK, err = wholeParam(k, v, 0, 1<<20)
		case "seed":
			var s int
			s, err = wholeParam(k, v, -1, math.MaxUint32-1)
			ep.sampling.Seed = int64(s)
		case "temperature":
			f, ok := v.(float64)
			if !ok || f < 0 || f > 10 || math.IsNaN(f) {
				err = fmt.Errorf("params.temperature must be a number from 0 to 10, got %s", describe.JSON(v))
			}
			ep.sampling.Temperature = f
		case "top_p":
			f, ok := v.(float64)
			if !ok || !(f > 0 && f <= 1) {
				err = fmt.Errorf("params.top_p must be a number above 0 and at most 1, got %s", describe.JSON(v))
			}
			ep.sampling.TopP = f
		case "ignore_eos":
			b, ok := v.(bool)
			if !ok {
				err = fmt.Errorf("params.ignore_eos must be true or false, got %s", describe.JSON(v))
			}
			ep.ignoreEOS = b
		case "stop":
			ep.stop, err = stopParam(v)
		case "messages":
			ep.messages, err = messagesParam(v)
		default:
			names := make([]string, 0, len(paramDocs))
			for n := range paramDocs {
				names = append(names, n)
			}
			sort.Strings(names)
			err = fmt.Errorf("unknown parameter params.%s; this runner takes %s", k, strings.Join(names, ", "))
		}
		if err != nil {
			return execParams{}, err
		}
	}
	return ep, nil
}

func wholeParam(name string, v any, lo, hi float64) (int, error) {
	f, ok := v.(float64)
	if !ok || f != math.Trunc(f) || f < lo || f > hi {
		return 0, fmt.Errorf("params.%s must be a whole number from %s to %s, got %s", name, describe.Number(lo), describe.Number(hi), describe.JSON(v))
	}
	return int(f), nil
}

// nulError tells where text holds a NUL character, or returns nil. llama.cpp reads text
// as a C string, and yzma hands it none at all for a string with a NUL (llama_tokenize
// then crashes the process), so such text is refused before it gets there.
func nulError(what, text string) error {
	if i := strings.IndexByte(text, 0); i >= 0 {
		return fmt.Errorf("%s contains a NUL character (U+0000) at byte %d, which llama.cpp cannot read: remove it", what, i)
	}
	return nil
}

func stopParam(v any) ([]string, error) {
	switch s := v.(type) {
	case string:
		if s == "" {
			return nil, nil
		}
		return []string{s}, nil
	case []any:
		var out []string
		for i, e := range s {
			str, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("params.stop[%d] must be a string, got %s", i, describe.JSON(e))
			}
			if str != "" {
				out = append(out, str)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("params.stop must be a string or a list of strings, got %s", describe.JSON(v))
}

func messagesParam(v any) ([]chatMessage, error) {
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return nil, fmt.Errorf("params.messages must be a non-empty list of {role, content} objects")
	}
	out := make([]chatMessage, 0, len(list))
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("params.messages[%d] must be an object with role and content", i)
		}
		role, _ := m["role"].(string)
		content, cok := m["content"].(string)
		if role == "" || !cok {
			return nil, fmt.Errorf("params.messages[%d] needs a role and a content, both strings", i)
		}
		for k := range m {
			if k != "role" && k != "content" {
				return nil, fmt.Errorf("params.messages[%d] has an unknown field %q; a message has role and content", i, k)
			}
		}
		if !rolePattern.MatchString(role) {
			return nil, fmt.Errorf("params.messages[%d].role %q is not a role name: use a lowercase name such as system, user or assistant (letters, digits and _, at most 32)", i, role)
		}
		if err := nulError(fmt.Sprintf("params.messages[%d].content", i), content); err != nil {
			return nil, err
		}
		out = append(out, chatMessage{Role: role, Content: content})
	}
	return out, nil
}

// renderChat formats messages with the model's chat template, ready for the assistant's
// answer. The template is Jinja, rendered as the Hugging Face tokenizer does (messages,
// add_generation_prompt, bos_token, eos_token); when the Jinja engine cannot render it,
// llama.cpp's own formatter for known template families is tried.
func renderChat(info *modelInfo, msgs []chatMessage) (string, error) {
	tmpl := info.ChatTemplate
	if tmpl == "" {
		return "", fmt.Errorf("model %s has no chat template (tokenizer.chat_template): send the prompt as input instead of params.messages", info.Path)
	}
	out, jerr := renderJinja(tmpl, info, msgs)
	if jerr == nil {
		return out, nil
	}
	if out, ok := renderBuiltin(tmpl, msgs); ok {
		return out, nil
	}
	return "", fmt.Errorf("the chat template of model %s cannot be applied: %v (llama.cpp does not recognise it either)", info.Path, jerr)
}

func renderJinja(tmpl string, info *modelInfo, msgs []chatMessage) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("jinja: %v", r)
		}
	}()
	t, err := jinja.Compile(tmpl)
	if err != nil {
		return "", err
	}
	list := make([]any, len(msgs))
	for i, m := range msgs {
		list[i] = map[string]any{"role": m.Role, "content": m.Content}
	}
	return t.Render(map[string]any{
		"messages":              list,
		"add_generation_prompt": true,
		"bos_token":             info.BOS,
		"eos_token":             info.EOS,
	})
}

// renderBuiltin applies llama.cpp's built-in formatter, which recognises common template
// families by their markers.
func renderBuiltin(tmpl string, msgs []chatMessage) (string, bool) {
	cm := make([]llama.ChatMessage, len(msgs))
	size := len(tmpl)
	for i, m := range msgs {
		cm[i] = llama.NewChatMessage(m.Role, m.Content)
		size += len(m.Role) + len(m.Content) + 64
	}
	buf := make([]byte, size)
	n := llama.ChatApplyTemplate(tmpl, cm, true, buf)
	if n > int32(len(buf)) {
		buf = make([]byte, n)
		n = llama.ChatApplyTemplate(tmpl, cm, true, buf)
	}
	if n <= 0 || n > int32(len(buf)) {
		return "", false
	}
	return string(buf[:n]), true
}
