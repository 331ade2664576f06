#!/usr/bin/env python3
"""Times an online backup and its restores (BENCHMARKS.md, "Online backups and restores").

Run from the repository after `make build`:  python3 scripts/backup/bench.py [TRACES]

It starts bin/limitd on configs/default.hcl (port 18790, data_dir in a temporary folder),
makes TRACES traces (default 20,000) of 1 KB of data through POST /v1/traces from 8
clients, times `limitctl backup` three times against a `tar -czf` of the stopped bolt
files, then `limitd -restore` into an empty bolt and an empty SQLite storage.
"""
import concurrent.futures as cf
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

PORT = 18790
N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000


def config(data_dir, port):
    src = open("configs/default.hcl").read()
    src = src.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace('"./data"', json.dumps(data_dir))
    path = os.path.join(os.path.dirname(data_dir), f"limit-{port}.hcl")
    open(path, "w").write(src)
    return path


def timed(args, env=None):
    t = time.monotonic()
    subprocess.run(args, check=True, capture_output=True, env=env)
    return time.monotonic() - t


def main():
    tmp = tempfile.mkdtemp(prefix="limit-bench-backup-")
    try:
        cfg = config(os.path.join(tmp, "data"), PORT)
        d = subprocess.Popen(["bin/limitd", "-config", cfg], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        d.stdout.readline()  # "limitd … listening on …"
        c = http.client.HTTPConnection("127.0.0.1", PORT)
        c.request("POST", "/v1/sessions", json.dumps({"name": "bench"}), {"Content-Type": "application/json"})
        sid = json.loads(c.getresponse().read())["id"]

        def fill(k):
            c = http.client.HTTPConnection("127.0.0.1", PORT)
            for i in range(k):
                c.request("POST", "/v1/traces", json.dumps({"session_id": sid, "data": {"i": i, "pad": "x" * 1000}}),
                          {"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                if r.status != 201:
                    raise SystemExit(f"POST /v1/traces: {r.status}")

        t = time.monotonic()
        with cf.ThreadPoolExecutor(8) as ex:
            list(ex.map(fill, [N // 8] * 8))
        print(f"{N // 8 * 8} traces made in {time.monotonic() - t:.1f} s")
        archive = os.path.join(tmp, "b.tar.gz")
        for i in range(3):
            s = timed(["bin/limitctl", "-addr", f":{PORT}", "backup", "-f", archive])
            print(f"limitctl backup: {s:.2f} s, {os.path.getsize(archive)} bytes")
        d.terminate()
        d.wait()
        dbs = [f for f in os.listdir(os.path.join(tmp, "data")) if re.match(r"limit\.db", f)]
        s = timed(["tar", "-czf", os.path.join(tmp, "plain.tar.gz"), "-C", os.path.join(tmp, "data")] + dbs)
        print(f"reference, tar -czf of the stopped bolt files: {s:.2f} s, {os.path.getsize(os.path.join(tmp, 'plain.tar.gz'))} bytes")
        for i, backend in enumerate(["bolt", "sqlite"]):
            cfg = config(os.path.join(tmp, "restore-" + backend), PORT + 1 + i)
            env = dict(os.environ, STORAGE_BACKEND=backend)
            print(f"limitd -restore into {backend}: {timed(['bin/limitd', '-config', cfg, '-restore', archive], env):.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
