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

governance {
  policy = "default"
}

rd {
  alpha   = 0.5
  epsilon = 0.01
}
