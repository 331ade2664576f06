# plugins/storage-bolt: TestGroupCommitFsyncs counts the fsyncs of a group commit with
# strace (it skips, saying so, where strace is missing; CI installs it so the test runs).
if ! command -v strace >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq strace >/dev/null
fi
