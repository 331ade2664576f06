# plugins/runner-llama: its tests load llama.cpp, which comes as prebuilt shared libraries
# from the npm package @node-llama-cpp/linux-x64@3.21.1 (fetched into .cache/llama by
# `make llama-deps`), through yzma, which needs libffi.so.8.
if ! dpkg -s libffi8 >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq libffi8 >/dev/null
fi
make --no-print-directory llama-deps
