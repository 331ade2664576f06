# shellcheck shell=bash
# Governance rule plugins: limit-governance-codesafety parses Python with the standard
# library's ast module in a /usr/bin/python3 helper (its tests run it for real).
# Idempotent and fast: installs python3 only when the interpreter is missing.
if [ ! -x /usr/bin/python3 ]; then
  echo "installing python3 for plugins/governance-codesafety"
  apt-get update -qq
  apt-get install -y -qq python3 >/dev/null
fi
/usr/bin/python3 -c 'import ast, sys; assert sys.version_info >= (3, 8), sys.version' \
  || { echo "plugins/governance-codesafety needs Python 3.8 or newer at /usr/bin/python3"; exit 1; }
