# The limit-governance-codesafety plugin's analyzer: it parses Python code with the
# standard library's ast module and reports the patterns Bandit and Semgrep flag.
#
# Protocol: one JSON object per line on stdin, {"id": N, "code": "..."}; one JSON object
# per line on stdout, {"id": N, "findings": [...]} or {"id": N, "syntax_error": "..."}.
# Each finding: {"check", "line", "col", "end_line", "end_col", "message"}; columns are
# UTF-8 byte offsets, as ast gives them. The plugin maps checks to flags and severities.
import ast
import json
import re
import sys

# MAX_FINDINGS caps the findings returned for one code (the total is returned too).
MAX_FINDINGS = 200

SHELL_CALLS = {
    "os.system", "os.popen", "os.popen2", "os.popen3", "os.popen4",
    "popen2.popen2", "popen2.popen3", "popen2.popen4", "popen2.Popen3", "popen2.Popen4",
    "commands.getoutput", "commands.getstatusoutput", "subprocess.getoutput",
    "subprocess.getstatusoutput",
}
SUBPROCESS_CALLS = {
    "subprocess.Popen", "subprocess.call", "subprocess.check_call", "subprocess.check_output",
    "subprocess.run", "asyncio.create_subprocess_exec",
}
NOSHELL_CALLS = {
    "os.execl", "os.execle", "os.execlp", "os.execlpe", "os.execv", "os.execve", "os.execvp",
    "os.execvpe", "os.spawnl", "os.spawnle", "os.spawnlp", "os.spawnlpe", "os.spawnv",
    "os.spawnve", "os.spawnvp", "os.spawnvpe", "os.startfile", "os.posix_spawn", "os.posix_spawnp",
    "pty.spawn", "asyncio.create_subprocess_shell",
}
PICKLE_CALLS = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.load", "cPickle.loads",
    "cPickle.Unpickler", "_pickle.load", "_pickle.loads", "dill.load", "dill.loads",
    "shelve.open", "jsonpickle.decode", "pandas.read_pickle", "joblib.load",
}
MARSHAL_CALLS = {"marshal.load", "marshal.loads"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}
NETWORK_CALLS = re.compile(
    r"^(requests|httpx|aiohttp|urllib3|urllib\.request|urllib2|http\.client|smtplib|ftplib|socket|paramiko)\."
    r"|\.(send|sendall|sendto|post|put|urlopen|sendmail|send_message|storbinary)$")
SECRET_NAME = re.compile(r"(pass(word|wd)?|pwd|secret|token|api_?key|apikey|private_?key|credential|auth)", re.I)
SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASS|CREDENTIAL|AUTH|AWS_|GITHUB_|OPENAI|ANTHROPIC|SESSION|COOKIE)", re.I)
SECRET_VALUE = re.compile(
    r"(AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|sk-[A-Za-z0-9_-]{20,}|sk-ant-[A-Za-z0-9_-]{20,}|ghp_[A-Za-z0-9]{36}"
    r"|github_pat_[A-Za-z0-9_]{40,}|xox[baprs]-[A-Za-z0-9-]{10,}|-----BEGIN (RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----"
    r"|AIza[0-9A-Za-z_-]{35})")
CRED_PATHS = re.compile(r"(\.aws/credentials|\.ssh/id_|\.netrc|/etc/shadow|\.docker/config\.json|\.kube/config|\.git-credentials|\.pgpass)")
SQL = re.compile(r"^\s*(select\s.+\sfrom\s|insert\s+into\s|update\s+\S+\s+set\s|delete\s+from\s|drop\s+table\s|create\s+table\s|alter\s+table\s|replace\s+into\s)", re.I | re.S)
SHELL_BINARIES = re.compile(r"^/bin/(ba|z|da|k)?sh$|^(ba|z|da)?sh$|^cmd(\.exe)?$|^powershell(\.exe)?$")
REVERSE_SHELL_STRINGS = re.compile(r"(/dev/tcp/|/dev/udp/|\bnc\s+(-\w+\s+)*-e\b|\bncat\b.*\s-e\b|bash\s+-i\s*>&|mkfifo\s+/tmp/\S+;\s*(nc|cat)|socat\s+.*exec:)", re.I)
DESTRUCTIVE_STRINGS = re.compile(r"(\brm\s+-(rf|fr|r\s+-f|f\s+-r)\s+(/|~|/\*|\$HOME)(\s|$|['\"])|\bmkfs(\.\w+)?\s+/dev/|\bdd\s+if=/dev/(zero|random|urandom)\s+of=/dev/[sh]d|:\(\)\s*\{\s*:\|:&\s*\};:|\bchmod\s+-R\s+777\s+/(\s|$))")
SENSITIVE_ROOTS = {"/", "/home", "/etc", "/usr", "/var", "/root", "~"}


class Analyzer(ast.NodeVisitor):
    def __init__(self):
        self.aliases = {}        # local name -> qualified name
        self.findings = []
        self.tainted = set()     # names holding credentials
        self.sockets = []        # calls of socket connect
        self.dup2 = []           # os.dup2 calls
        self.shell_spawn = []    # calls spawning a shell binary

    # --- helpers ---
    def add(self, check, node, message):
        self.findings.append({
            "check": check, "line": node.lineno, "col": node.col_offset,
            "end_line": getattr(node, "end_lineno", node.lineno) or node.lineno,
            "end_col": getattr(node, "end_col_offset", node.col_offset) or node.col_offset,
            "message": message,
        })

    def qualname(self, node):
        """Dotted name of a Name/Attribute chain with import aliases resolved."""
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            parts.append(self.aliases.get(node.id, node.id))
        elif isinstance(node, ast.Call):
            inner = self.qualname(node.func)
            if inner is None:
                return None
            parts.append(inner + "()")
        else:
            return None
        return ".".join(reversed(parts))

    @staticmethod
    def kwarg(call, name):
        for k in call.keywords:
            if k.arg == name:
                return k.value
        return None

    @staticmethod
    def const_str(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return None

    @staticmethod
    def is_true(node):
        return isinstance(node, ast.Constant) and node.value is True

    @staticmethod
    def is_false(node):
        return isinstance(node, ast.Constant) and node.value is False

    def strings_in(self, node):
        for n in ast.walk(node):
            s = self.const_str(n)
            if s is not None:
                yield n, s

    def secretish_key(self, node):
        s = self.const_str(node)
        if s is None:
            return True  # a computed key: could be anything
        return bool(SECRET_ENV.search(s))

    def reads_cred_file(self, node):
        for _, s in self.strings_in(node):
            if CRED_PATHS.search(s):
                return True
        return False

    def carries_secret(self, node):
        """Whether evaluating node yields a credential: a tainted name, a secret-looking
        environment variable, the whole environment, or a credentials file's content."""
        if isinstance(node, ast.Name):
            return node.id in self.tainted or self.aliases.get(node.id) == "os.environ"
        if isinstance(node, ast.Subscript) and self.qualname(node.value) == "os.environ":
            return self.secretish_key(node.slice)
        if isinstance(node, ast.Call):
            q = self.qualname(node.func) or ""
            if q in ("os.getenv", "os.environ.get", "os.getenvb"):
                return bool(node.args) and self.secretish_key(node.args[0])
            if q in ("os.environ.copy", "os.environ.items", "os.environ.values"):
                return True
            if q.endswith((".read", ".read_text", ".readlines", ".read_bytes")) and self.reads_cred_file(node.func):
                return True
            parts = list(node.args) + [k.value for k in node.keywords]
            if isinstance(node.func, ast.Attribute):
                parts.append(node.func.value)  # token.encode(), "x".join(creds)
            return any(self.carries_secret(a) for a in parts)
        if isinstance(node, ast.Attribute):
            return self.qualname(node) == "os.environ"
        return any(self.carries_secret(c) for c in ast.iter_child_nodes(node))

    # --- visitors ---
    def visit_Import(self, node):
        for a in node.names:
            self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        if node.module:
            for a in node.names:
                self.aliases[a.asname or a.name] = node.module + "." + a.name
        self.generic_visit(node)

    def visit_Assign(self, node):
        self.check_assign(node.targets, node.value, node)
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.check_assign([node.target], node.value, node)
        self.generic_visit(node)

    def check_assign(self, targets, value, node):
        names = []
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name):
                    names.append(n.id)
                elif isinstance(n, ast.Attribute):
                    names.append(n.attr)
                elif isinstance(n, ast.Subscript):
                    k = self.const_str(n.slice)
                    if k:
                        names.append(k)
        s = self.const_str(value)
        if s and len(s) >= 4 and any(SECRET_NAME.search(n) for n in names) and not s.startswith(("http://", "https://")) \
                and " " not in s.strip() and not SECRET_VALUE.search(s):
            self.add("B105", value, "hard-coded password or secret assigned to %s" % ", ".join(names))
        if self.carries_secret(value):
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        self.tainted.add(n.id)

    def visit_FunctionDef(self, node):
        args = node.args
        defaults = list(zip(args.args[len(args.args) - len(args.defaults):], args.defaults))
        defaults += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
        for a, d in defaults:
            s = self.const_str(d)
            if s and len(s) >= 4 and SECRET_NAME.search(a.arg):
                self.add("B107", d, "hard-coded password or secret as the default of argument %s" % a.arg)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Constant(self, node):
        if isinstance(node.value, str):
            v = node.value
            if SECRET_VALUE.search(v):
                self.add("secret-literal", node, "string literal looks like a credential (%s…)" % SECRET_VALUE.search(v).group(0)[:8])
            if REVERSE_SHELL_STRINGS.search(v):
                self.add("reverse-shell", node, "string holds a reverse-shell command: %r" % v[:80])
            if DESTRUCTIVE_STRINGS.search(v):
                self.add("destructive", node, "string holds a destructive shell command: %r" % v[:80])

    def visit_Call(self, node):
        q = self.qualname(node.func) or ""
        short = q.rsplit(".", 1)[-1]
        shell = self.kwarg(node, "shell")

        if q in SUBPROCESS_CALLS or q.startswith("subprocess."):
            if shell is not None and not self.is_false(shell):
                self.add("B602", node, "%s called with shell=True: the command line is interpreted by a shell" % q)
            else:
                self.check_shell_binary(node, q)
        elif shell is not None and self.is_true(shell):
            self.add("B604", node, "%s called with shell=True" % q)
        if q in SHELL_CALLS:
            self.add("B605", node, "%s starts a process through a shell" % q)
        if q in NOSHELL_CALLS:
            self.add("B606", node, "%s starts a process" % q)
            self.check_shell_binary(node, q)
        if q in ("eval", "builtins.eval"):
            self.add("B307", node, "eval() runs arbitrary code")
        if q in ("exec", "builtins.exec"):
            self.add("B102", node, "exec() runs arbitrary code")
        if q in ("compile", "builtins.compile") and len(node.args) >= 3:
            self.add("B102", node, "compile() of code to run")
        if q in PICKLE_CALLS:
            self.add("B301", node, "%s deserialises untrusted data, which can run code" % q)
        if q in MARSHAL_CALLS:
            self.add("B302", node, "%s deserialises untrusted data" % q)
        if q in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load", "yaml.unsafe_load_all"):
            loader = self.kwarg(node, "Loader")
            if loader is None and len(node.args) >= 2:
                loader = node.args[1]
            lname = (self.qualname(loader) or "") if loader is not None else ""
            if q.startswith("yaml.unsafe") or lname.rsplit(".", 1)[-1] not in SAFE_YAML_LOADERS:
                self.add("B506", node, "%s without a safe Loader can construct arbitrary objects" % q)
        if q in ("torch.load",):
            wo = self.kwarg(node, "weights_only")
            if wo is None or not self.is_true(wo):
                self.add("B614", node, "torch.load without weights_only=True unpickles arbitrary objects")
        if q.split(".")[0] in ("requests", "httpx") or short in ("get", "post", "put", "patch", "delete", "request", "head", "Client", "AsyncClient", "Session"):
            v = self.kwarg(node, "verify")
            if v is not None and self.is_false(v):
                self.add("B501", node, "%s with verify=False: TLS certificates are not checked" % q)
        if q in ("ssl._create_unverified_context", "ssl._create_stdlib_context"):
            self.add("B323", node, "%s turns TLS certificate verification off" % q)
        for k in node.keywords:
            if k.arg and SECRET_NAME.search(k.arg):
                s = self.const_str(k.value)
                if s and len(s) >= 4:
                    self.add("B106", k.value, "hard-coded password or secret passed as %s=" % k.arg)
        # Binding all interfaces.
        for n, s in self.strings_in(node):
            if s in ("0.0.0.0", "::") and (short in ("bind", "run", "listen", "serve", "create_server", "make_server", "start_server", "HTTPServer", "TCPServer", "ThreadingHTTPServer", "uvicorn.run") or self.kwarg(node, "host") is n):
                self.add("B104", n, "binds to all network interfaces (%s)" % s)
                break
        # World-writable permissions.
        if short in ("chmod", "fchmod", "lchmod"):
            pos = 1 if q.startswith("os.") else 0
            mode = node.args[pos] if len(node.args) > pos else self.kwarg(node, "mode")
            if isinstance(mode, ast.Constant) and isinstance(mode.value, int) and mode.value & 0o002:
                self.add("B103", node, "chmod to mode %s makes the file world-writable" % oct(mode.value))
        # SQL built from strings.
        if short in ("execute", "executemany", "executescript", "raw", "text", "read_sql", "read_sql_query") and node.args:
            if self.built_sql(node.args[0]):
                self.add("B608", node.args[0], "SQL query built from strings: use parameters")
        # Dynamic imports.
        if q in ("__import__", "builtins.__import__", "importlib.import_module", "importlib.__import__"):
            self.add("dynamic-import", node, "%s imports a module chosen at run time" % q)
        # Destructive file operations.
        if q in ("shutil.rmtree",) and node.args:
            s = self.const_str(node.args[0])
            if s is not None and s.rstrip("/") in {r.rstrip("/") for r in SENSITIVE_ROOTS} | {""}:
                self.add("destructive", node, "shutil.rmtree(%r) deletes a system tree" % s)
        # Reverse shells: a socket connected to a remote end with its descriptors given
        # to a shell.
        if short == "connect" or q in ("socket.create_connection",):
            self.sockets.append(node)
        if q == "os.dup2":
            self.dup2.append(node)
        # Credentials sent over the network.
        if NETWORK_CALLS.search(q) and q not in ("os.environ.get", "dict.get") and not q.endswith("environ.get"):
            if any(self.carries_secret(a) for a in list(node.args) + [k.value for k in node.keywords]):
                self.add("exfiltration", node, "%s sends credentials read from the environment or a credentials file" % q)
        self.generic_visit(node)

    def check_shell_binary(self, node, q):
        args = node.args[0] if node.args else self.kwarg(node, "args")
        first = None
        if isinstance(args, (ast.List, ast.Tuple)) and args.elts:
            first = self.const_str(args.elts[0])
        elif args is not None:
            first = self.const_str(args)
        if q == "pty.spawn" or (first and SHELL_BINARIES.search(first.split()[0] if first.split() else "")):
            self.shell_spawn.append(node)

    def built_sql(self, node):
        """A query made by concatenation, %-formatting, .format() or an f-string."""
        def literal_text(n):
            return "".join(s for _, s in self.strings_in(n))
        if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in node.values):
            return bool(SQL.search(literal_text(node)))
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
            return bool(SQL.search(literal_text(node)))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            return bool(SQL.search(literal_text(node.func.value)))
        if isinstance(node, ast.Name):
            return node.id in self.sql_names
        return False

    def finish(self):
        if self.sockets and (self.dup2 or self.shell_spawn):
            target = (self.dup2 or self.shell_spawn)[0]
            self.add("reverse-shell", target, "a socket is connected out and its descriptors are handed to a shell (reverse shell)")


def collect_sql_names(tree, an):
    """Names assigned a query built from strings, so cursor.execute(q) is caught too."""
    an.sql_names = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
            if an.built_sql(n.value):
                an.sql_names.add(n.targets[0].id)


def analyze(code):
    tree = ast.parse(code, mode="exec")
    an = Analyzer()
    an.sql_names = set()
    # Imports first, so aliases are known wherever they are used.
    for n in ast.walk(tree):
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            an.visit_Import(n) if isinstance(n, ast.Import) else an.visit_ImportFrom(n)
    an.findings = []
    collect_sql_names(tree, an)
    an.visit(tree)
    an.finish()
    seen = set()
    out = []
    for f in an.findings:
        key = (f["check"], f["line"], f["col"])
        if key not in seen:
            seen.add(key)
            out.append(f)
    out.sort(key=lambda f: (f["line"], f["col"], f["check"]))
    return out[:MAX_FINDINGS], len(out)


def main():
    sys.setrecursionlimit(10000)
    out = sys.stdout
    for line in sys.stdin:
        try:
            req = json.loads(line)
        except ValueError as e:
            out.write(json.dumps({"id": None, "error": "bad request: %s" % e}) + "\n")
            out.flush()
            continue
        rid = req.get("id")
        try:
            findings, total = analyze(req.get("code", ""))
            resp = {"id": rid, "findings": findings, "total": total}
        except (SyntaxError, ValueError) as e:
            resp = {"id": rid, "syntax_error": "%s: %s" % (type(e).__name__, e)}
        except RecursionError:
            resp = {"id": rid, "syntax_error": "code nested too deeply to analyse"}
        except MemoryError:
            resp = {"id": rid, "error": "out of memory"}
        except Exception as e:  # noqa: BLE001 - the plugin must get an answer
            resp = {"id": rid, "error": "%s: %s" % (type(e).__name__, e)}
        out.write(json.dumps(resp) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
