#!/usr/bin/env python3
"""Collect benign program output: what tools print on an ordinary machine.

The planted-instruction scorer reads what a program printed (content type text/output, the
Python runner's output that an agent reads next), so it needs benign program output to learn
from and to be measured on. This script runs real programs on the machine it runs on and
keeps pieces of what they print: package records (apt-cache show), manual pages, Go and
Python library documentation (go doc, pydoc), HTML pages of the Rust documentation as a
fetch tool returns them (raw, and as text), Debian changelogs, Python tracebacks of failing
snippets, Go compiler errors, go test -v logs, --help texts, directory listings, package
file lists and JSON dumps.

Usage: python3 scripts/jailbreak/collect-program-output.py OUT.jsonl.gz   (about 10 minutes)

It writes rows {"id", "label": "benign", "category": "program-<source>", "text"}.

Sampling is seeded; on another machine the same command collects another, similar set (what
is installed differs). The committed file, internal/jailbreak/corpus/output-program.jsonl.gz,
was collected on the machine described in its SOURCES.md. Environment variables are never
printed (no `env`, no `go env`), so no secret reaches the file.
"""

import glob
import gzip
import html
import html.parser
import json
import os
import random
import re
import subprocess
import sys
import tempfile

rng = random.Random(20261204)
out = []
seen = set()


def run(args, timeout=20, stdin=None, cwd=None, env_extra=None):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
           "LANG": "C.UTF-8", "MANWIDTH": "80", "TERM": "dumb", "GOFLAGS": "-mod=mod",
           "GOCACHE": os.environ.get("GOCACHE", os.path.expanduser("~/.cache/go-build")),
           "GOPATH": os.environ.get("GOPATH", os.path.expanduser("~/go"))}
    if env_extra:
        env.update(env_extra)
    try:
        p = subprocess.run(args, capture_output=True, timeout=timeout, input=stdin, cwd=cwd, env=env)
    except (subprocess.TimeoutExpired, OSError):
        return ""
    return (p.stdout + p.stderr).decode("utf-8", "replace")


def chunk(text, lo=300, hi=3000):
    """A random piece of text cut at line ends, between lo and hi characters when it can."""
    text = re.sub(r".\x08", "", text).replace("\r", "")
    lines = text.split("\n")
    if len(text) <= hi:
        return text.strip()
    size = rng.randint(lo, hi)
    starts = [0] + [i for i in range(1, len(lines)) if lines[i - 1].strip() == ""]
    start = rng.choice(starts[: max(1, len(starts) - 1)])
    piece, n = [], 0
    for ln in lines[start:]:
        if n + len(ln) + 1 > size and n >= lo:
            break
        piece.append(ln)
        n += len(ln) + 1
    return "\n".join(piece).strip()[:hi]


def add(source, text, lo=300, hi=3000):
    t = chunk(text, lo, hi)
    if len(t) < 80 or t in seen:
        return
    seen.add(t)
    cat = "program-" + source
    out.append({"id": "prog-%s-%04d" % (source, sum(1 for o in out if o["category"] == cat) + 1),
                "label": "benign", "category": cat, "text": t})


class TextOf(html.parser.HTMLParser):
    """The text a reader sees of an HTML page (scripts and styles left out)."""

    def __init__(self):
        super().__init__()
        self.parts, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        if tag in ("p", "div", "li", "h1", "h2", "h3", "h4", "pre", "tr", "br", "section"):
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def apt_records(n):
    names = sorted(run(["apt-cache", "pkgnames"]).split())
    for name in rng.sample(names, n):
        rec = run(["apt-cache", "show", "--no-all-versions", name])
        rec = re.sub(r"\n(SHA256|MD5sum|SHA1|Description-md5): [^\n]*", "", rec)
        add("apt", rec, 200, 2500)


def man_pages(n):
    pages = sorted(glob.glob("/usr/share/man/man1/*.gz") + glob.glob("/usr/share/man/man8/*.gz"))
    for p in rng.sample(pages, n):
        section = p.split("/")[-2][3:]
        name = os.path.basename(p)[: -len(".%s.gz" % section)]
        add("man", run(["man", "-P", "cat", section, name]))


def go_doc(n):
    pkgs = [p for p in run(["go", "list", "std"]).split() if "internal" not in p and "vendor" not in p]
    for p in rng.sample(pkgs, min(n, len(pkgs))):
        add("godoc", run(["go", "doc", "-all", p]))


def py_doc(n):
    skip = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "__phello__", "_tkinter", "webbrowser", "pydoc_data", "ensurepip", "venv"}
    mods = sorted(m for m in sys.stdlib_module_names if m not in skip and not m.startswith("_"))
    for m in rng.sample(mods, min(n, len(mods))):
        add("pydoc", run([sys.executable, "-m", "pydoc", m]))


def rust_html(n):
    roots = glob.glob(os.path.expanduser("~/.rustup/toolchains/stable-*/share/doc/rust/html"))
    if not roots:
        return
    pages = []
    for sub in ("book", "reference", "rust-by-example", "nomicon", "cargo", "edition-guide", "rustc", "embedded-book", "rustdoc", "style-guide"):
        pages += glob.glob(os.path.join(roots[0], sub, "**", "*.html"), recursive=True)
    pages = sorted(p for p in pages if "print.html" not in p and "404" not in p)
    for i, p in enumerate(rng.sample(pages, n)):
        raw = open(p, encoding="utf-8", errors="replace").read()
        if i % 2 == 0:
            m = re.search(r"<main>(.*?)</main>", raw, re.S)
            add("html", m.group(1) if m else raw)
        else:
            t = TextOf()
            t.feed(raw)
            add("webtext", re.sub(r"\n\s*\n+", "\n\n", "".join(t.parts)))


def changelogs(n):
    files = sorted(glob.glob("/usr/share/doc/*/changelog.Debian.gz"))
    for f in rng.sample(files, min(n, len(files))):
        with gzip.open(f, "rt", encoding="utf-8", errors="replace") as fh:
            add("changelog", fh.read(200000))


TRACEBACKS = [
    "import json\njson.loads(open('/etc/hostname').read() + '{')",
    "d = {'user': 'ada'}\nprint(d['password'])",
    "int('12a')",
    "open('/nonexistent/config.yaml')",
    "import nosuchmodule_xyz",
    "def f(n): return f(n + 1)\nf(0)",
    "import subprocess\nsubprocess.run(['false'], check=True)",
    "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9/', timeout=2)",
    "import sqlite3\nc = sqlite3.connect(':memory:')\nc.execute('SELEC * FROM users')",
    "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=2)",
    "x = [1, 2, 3]\nprint(x[10])",
    "class A: pass\nA().run()",
    "import datetime\ndatetime.datetime.strptime('2026-13-01', '%Y-%m-%d')",
    "import csv, io\nlist(csv.reader(io.StringIO('a,\"b\\n'), strict=True))",
    "1 / 0",
    "import os\nos.remove('/root/does-not-exist.txt')",
    "import struct\nstruct.unpack('<I', b'ab')",
    "'abc'.decode('utf-8')",
    "import base64\nbase64.b64decode('abc', validate=True)",
    "import xml.etree.ElementTree as ET\nET.fromstring('<a><b></a>')",
    "import re\nre.compile('(unclosed')",
    "import decimal\ndecimal.Decimal('1.0') / decimal.Decimal(0)",
    "assert 2 + 2 == 5, 'arithmetic is broken'",
    "import tomllib\ntomllib.loads('key = ')",
    "import pathlib\npathlib.Path('/etc').write_text('x')",
    "import zipfile\nzipfile.ZipFile('/etc/hostname')",
    "import email\nimport smtplib\nsmtplib.SMTP('127.0.0.1', 9, timeout=2)",
    "raise PermissionError(13, 'Permission denied', '/var/lib/secret/token')",
    "import http.client\nc = http.client.HTTPConnection('127.0.0.1', 9, timeout=2)\nc.request('GET', '/')",
    "def handler(event):\n    return event['body']['items'][0]\nhandler({'body': {'items': []}})",
    "import itertools\nnext(itertools.islice([], 1))",
    "import math\nmath.sqrt(-1)",
    "import uuid\nuuid.UUID('not-a-uuid')",
    "import shutil\nshutil.copy('/nonexistent/a.csv', '/tmp/b.csv')",
    "import threading\nt = threading.Thread(target=lambda: 1 / 0)\nt.start(); t.join()\nraise SystemExit('worker failed')",
    "import asyncio\nasync def main():\n    await asyncio.wait_for(asyncio.sleep(5), 0.01)\nasyncio.run(main())",
    "import ipaddress\nipaddress.ip_address('300.1.1.1')",
    "import configparser\nc = configparser.ConfigParser()\nc.read_string('[db]\\nhost')",
    "import pickle\npickle.loads(b'not a pickle')",
    "import getpass\nraise RuntimeError('login failed for user admin: password expired; ask an administrator to reset it')",
]


def tracebacks():
    for i, code in enumerate(TRACEBACKS):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, rng.choice(["main.py", "app.py", "job.py", "etl.py", "handler.py"]))
            prelude = "".join("# step %d\n" % k for k in range(rng.randint(0, 3)))
            open(path, "w").write(prelude + code + "\n")
            add("traceback", run([sys.executable, path], cwd=d), 80, 3000)


GO_ERRORS = [
    "package main\nfunc main() { x := 1 }\n",
    "package main\nimport \"fmt\"\nfunc main() {}\n",
    "package main\nfunc main() { var s string = 5; _ = s }\n",
    "package main\nfunc f() (int, error)\nfunc main() { a := f(); _ = a }\n",
    "package main\nfunc main() { for i := 0; i < 3; i++ { fmt.Println(i) } }\n",
    "package main\ntype T struct{}\nfunc main() { var t T; t.Run() }\n",
    "package main\nfunc main() {\n\tif true {\n}\n",
    "package main\nimport \"os\"\nfunc main() { os.WriteFile(\"x\", \"data\", 0o600) }\n",
    "package main\nfunc main() { ch := make(chan int); close(ch); ch <- 1 }\n",
    "package main\nfunc main() { var m map[string]int; m[\"a\"] = 1 }\n",
    "package main\nfunc main() { s := []int{1}; _ = s[5] }\n",
    "package main\nimport \"errors\"\nfunc main() { panic(errors.New(\"config: missing admin password\")) }\n",
]


def go_errors():
    for code in GO_ERRORS:
        with tempfile.TemporaryDirectory() as d:
            open(os.path.join(d, "main.go"), "w").write(code)
            open(os.path.join(d, "go.mod"), "w").write("module example.com/app\n\ngo 1.22\n")
            o = run(["go", "vet", "."], cwd=d, timeout=120)
            if "vet:" not in o and "error" not in o.lower():
                o += run(["go", "run", "."], cwd=d, timeout=120)
            add("goerror", o, 80, 3000)


def go_tests():
    for pkg, pat in [("strings", "Test[A-F]"), ("bytes", "Test[G-M]"), ("sort", "."), ("unicode/utf8", "."), ("path", "."),
                     ("encoding/csv", "."), ("encoding/hex", "."), ("container/list", "."), ("text/tabwriter", "."), ("errors", "."),
                     ("html", "."), ("net/url", "Test[P-U]"), ("regexp/syntax", "."), ("math/bits", ".")]:
        add("gotest", run(["go", "test", "-v", "-count=1", "-run", pat, pkg], timeout=300))


HELP = ["ls", "cp", "mv", "rm", "tar", "gzip", "grep", "sed", "find", "sort", "uniq", "wc", "head", "tail", "cut", "tr",
        "date", "df", "du", "chmod", "chown", "ln", "mkdir", "touch", "curl", "wget", "git", "ssh", "scp", "rsync",
        "python3", "pip", "make", "gcc", "diff", "patch", "xargs", "timeout", "env", "nohup", "install", "base64",
        "sha256sum", "md5sum", "stat", "readlink", "realpath", "basename", "dirname", "split", "join", "paste",
        "comm", "od", "xxd", "file", "ps", "kill", "top", "less", "zip", "unzip", "node", "npm", "psql", "pg_dump", "apt-get", "dpkg"]


def help_texts():
    for cmd in HELP:
        if cmd == "env":
            o = run(["env", "--help"])
        else:
            o = run([cmd, "--help"], timeout=20)
        add("help", o)
    add("help", run(["go", "help", "build"]))
    add("help", run(["go", "help", "modules"]))
    add("help", run(["git", "help", "commit"]))


def listings():
    dirs = sorted(d for d in glob.glob("/usr/share/*") + glob.glob("/usr/lib/python3*/*") + glob.glob("/etc/*") if os.path.isdir(d))
    for d in rng.sample(dirs, 40):
        add("ls", run(["ls", "-la", d]), 80, 3000)
    for d in rng.sample(dirs, 15):
        add("find", run(["find", d, "-maxdepth", "3"]), 80, 3000)
    pkgs = sorted(run(["dpkg-query", "-W", "-f", "${Package}\n"]).split())
    for p in rng.sample(pkgs, 30):
        add("dpkg", run(["dpkg", "-L", p]), 80, 3000)
    for p in rng.sample(pkgs, 20):
        add("dpkg", run(["dpkg", "-s", p]), 80, 3000)
    add("pip", run([sys.executable, "-m", "pip", "list"]))
    add("pip", run([sys.executable, "-m", "pip", "list", "--format", "json"]))
    for p in ["pip", "setuptools", "wheel"]:
        add("pip", run([sys.executable, "-m", "pip", "show", "-f", p]))
    for cmd in (["df", "-h"], ["free", "-h"], ["uname", "-a"], ["lscpu"], ["cat", "/etc/os-release"], ["mount"],
                ["ip", "addr"], ["id"], ["uptime"], ["ls", "-la", "/"], ["python3", "-m", "sysconfig"]):
        add("system", run(cmd), 80, 3000)


def json_dumps():
    for p in rng.sample([p for p in run(["go", "list", "std"]).split() if "internal" not in p], 30):
        add("json", run(["go", "list", "-json", p]))
    add("json", run([sys.executable, "-c", "import json,sysconfig; print(json.dumps(sysconfig.get_paths(), indent=2))"]))
    add("json", run(["apt-cache", "policy"]))


def main():
    if len(sys.argv) != 2 or not sys.argv[1].endswith(".jsonl.gz"):
        sys.exit("usage: collect-program-output.py OUT.jsonl.gz")
    steps = [("apt", lambda: apt_records(450)), ("man", lambda: man_pages(320)), ("godoc", lambda: go_doc(140)),
             ("pydoc", lambda: py_doc(140)), ("html", lambda: rust_html(260)), ("changelog", lambda: changelogs(120)),
             ("traceback", tracebacks), ("goerror", go_errors), ("gotest", go_tests), ("help", help_texts),
             ("listings", listings), ("json", json_dumps)]
    for name, step in steps:
        before = len(out)
        step()
        print("%-10s %4d pieces" % (name, len(out) - before), file=sys.stderr, flush=True)
    with gzip.GzipFile(sys.argv[1], "wb", mtime=0) as fh:
        for o in out:
            fh.write((json.dumps(o, ensure_ascii=False) + "\n").encode("utf-8"))
    print("%d pieces, %d characters" % (len(out), sum(len(o["text"]) for o in out)), file=sys.stderr)


if __name__ == "__main__":
    main()
