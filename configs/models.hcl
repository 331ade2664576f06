# LIMIT host with model runners: a local GGUF model through llama.cpp, and hosted LLMs.
# `make testmodel` writes the tiny random-weight model used below; point `model` at a real
# GGUF file for real answers. The hosted runner reads its key from the environment.

host {
  listen   = "127.0.0.1:8080"
  data_dir = "./data"
}

storage "bolt" {}

runner "llama" {
  config {
    model        = "../build/testdata/tiny-llama.gguf" # relative to data_dir
    context_size = 512
    max_tokens   = 64
    seed         = 42
  }
}

# Any OpenAI-compatible server (vLLM, llama-server, Ollama); for OpenAI itself use
# provider = "openai", model = "gpt-4o-mini", api_key = env("OPENAI_API_KEY"); for
# Anthropic provider = "anthropic", api_key = env("ANTHROPIC_API_KEY").
runner "llm" {
  config {
    provider = "openai-compatible"
    base_url = "http://127.0.0.1:11434/v1"
    model    = "llama3.2"
  }
}

governance {
  policy = "default"
  rule "jailbreak" {}
}
