#!/usr/bin/env bash
# Sends N concurrent prompts of ~10 MB (spelled-out letters, the jailbreak rule's costliest
# shape; SHAPE=cjk for CJK text) to POST /v1/governance/evaluate of a daemon started here on
# configs/default.hcl,
# and reports the answers, the jailbreak plugin's and the daemon's peak memory (VmHWM) and
# the plugin's CPU time:
# when the clients left (with MAXT) and once it is idle again.
#
#   make build && scripts/jailbreak/large-prompts.sh [BIN_DIR] [PORT]
#   N=8 MAXT=3 scripts/jailbreak/large-prompts.sh bin 18187   # clients that leave after 3 s
#   N=8 SMALL=60 scripts/jailbreak/large-prompts.sh bin 18187  # and 60 small prompts, one after
#                                                              # another, during the burst
#
# BIN_DIR holds limitd and plugins/ (default: bin). Nothing is kept: the daemon's data
# directory is a temporary one, removed at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(cd "${1:-$root/bin}" && pwd)
port=${2:-18187}
n=${N:-8}
work=$(mktemp -d)
trap 'kill -INT "${daemon:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

python3 - "$work/body.json" "$work/small.json" "${SHAPE:-spelled}" <<'PY'
import json, sys
unit = {"spelled": "i-g-n-o-r-e ", "cjk": "忽略之前"}[sys.argv[3]]
size = len(unit.encode())
json.dump({"kind": "prompt", "text": unit * (9_900_000 // size)}, open(sys.argv[1], "w"), ensure_ascii=False)
small = "Please summarise the attached quarterly report in three bullet points for the board. "
json.dump({"kind": "prompt", "text": small * 20}, open(sys.argv[2], "w"))
PY
sed -e "s#127.0.0.1:8080#127.0.0.1:$port#" -e "s#\"\./data\"#\"$work/data\"#" \
	-e "s#^  log_level = \"info\"#  log_level = \"info\"\n  plugin_dir = \"$bin/plugins\"#" \
	"$root/configs/default.hcl" > "$work/limit.hcl"
"$bin/limitd" -config "$work/limit.hcl" > "$work/limitd.log" 2>&1 &
daemon=$!
for _ in $(seq 1 100); do
	curl -s "127.0.0.1:$port/v1/health" > /dev/null && break
	sleep 0.3
done
plugin=$(pgrep -f limit-governance-jailbreak -P "$daemon" | head -1)
cpu() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$plugin/stat"; }
echo "plugin CPU before: $(cpu) s"

clients=()
for i in $(seq 1 "$n"); do
	curl -s ${MAXT:+--max-time "$MAXT"} -o "$work/out$i" -w "%{http_code} %{time_total}\n" \
		-H 'Content-Type: application/json' --data-binary "@$work/body.json" \
		"127.0.0.1:$port/v1/governance/evaluate" > "$work/code$i" || true &
	clients+=($!)
done
if [[ -n "${SMALL:-}" ]]; then
	sleep 1
	for _ in $(seq 1 "$SMALL"); do
		curl -s -o /dev/null -w "%{time_total}\n" -H 'Content-Type: application/json' \
			--data-binary "@$work/small.json" "127.0.0.1:$port/v1/governance/evaluate"
	done > "$work/small.txt"
	python3 - "$work/small.txt" <<'PY'
import sys
v = sorted(float(x) for x in open(sys.argv[1]))
print("%d small prompts during the burst: p50 %.1f ms, p90 %.1f ms, largest %.1f ms"
      % (len(v), 1000 * v[len(v) // 2], 1000 * v[int(len(v) * 0.9)], 1000 * v[-1]))
PY
fi
if [[ -n "${MAXT:-}" ]]; then
	sleep "$MAXT.3"
	echo "plugin CPU when the clients left (+0.3 s): $(cpu) s"
fi
wait "${clients[@]}"
echo "HTTP status of the $n answers (000: the client left), and the slowest answer's time:"
cut -d' ' -f1 "$work"/code* | sort | uniq -c
cut -d' ' -f2 "$work"/code* | sort -n | tail -1 | sed 's/$/ s/'
python3 - "$work"/out* <<'PY'
import json, sys
from collections import Counter
c = Counter()
for f in sys.argv[1:]:
    try:
        d = json.load(open(f))
    except Exception:
        continue
    errs = [e for e in d.get("errors") or [] if "jailbreak" in e]
    c[errs[0][:160] if errs else "jailbreak rule answered"] += 1
for k, v in c.items():
    print(f"{v:7d} {k}")
PY
echo "plugin peak memory: $(awk '/VmHWM/ {printf "%.0f MB", $2/1024}' "/proc/$plugin/status"), limitd's: $(awk '/VmHWM/ {printf "%.0f MB", $2/1024}' "/proc/$daemon/status")"
sleep 6
echo "plugin CPU once idle (6 s later): $(cpu) s"
