# LIMIT host with the file storage backend: one file per key under ./data/files.

host {
  listen   = "127.0.0.1:8080"
  data_dir = "./data"
}

storage "file" {
  config {
    root = "files"
  }
}
