# LIMIT host with the file storage backend: one file per key under ./data/files.
#
# This file sets up storage only: it has no runner and no governance rule, so sessions
# here run nothing. For the default host (Python runner, jailbreak, codesafety and anomaly
# rules) on this backend, start configs/default.hcl with STORAGE_BACKEND=file instead, or
# copy its runner and governance blocks here.

host {
  listen   = "127.0.0.1:8080"
  data_dir = "./data"
}

storage "file" {
  config {
    root = "files"
  }
}
