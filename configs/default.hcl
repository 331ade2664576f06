# LIMIT host — default configuration: everything on loopback, bbolt storage under ./data.
# `make run` starts limitd on this file; limitd embeds a copy and uses it when no
# -config is given. Environment variables API_HOST, API_PORT, STORAGE_BACKEND,
# DATABASE_URL, GOVERNANCE_POLICY, FGW_ALPHA and FGW_EPSILON override it.

host {
  listen    = "127.0.0.1:8080"
  data_dir  = "./data"
  log_level = "info"
  # plugin_dir defaults to the "plugins" folder beside the limitd binary (bin/plugins).
}

storage "bolt" {
  config {
    path = "limit.db"
  }
}

# Python in a per-session sandbox (namespaces, cgroups, a per-session uid, Landlock,
# seccomp); GET /v1/health lists which isolation features this machine enforces.
runner "python" {
  config {
    timeout          = "30s"
    memory_limit     = "512MiB"
    cpu_limit        = 1
    max_processes    = 64
    max_output_bytes = "1MiB"
    max_file_bytes   = "1GiB"
    max_disk_bytes   = "1GiB"
  }
}

# Rules run on every execution: jailbreak and prompt-injection detection on inputs and
# outputs, Python code safety on code before it runs, statistical anomalies after.
governance {
  policy = "default"

  rule "jailbreak" {
    config {
      preset = "default"
    }
  }
  rule "codesafety" {}
  rule "anomaly" {}
}

rd {
  alpha   = 0.5
  epsilon = 0.01
}
