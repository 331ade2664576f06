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
import stat
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
# A name holds a secret when one of its words (split at _ and case changes) is or ends
# with a SECRET_WORDS word, or two are api key or private key; unless its last word says
# it holds something about a secret (token_url, password_field, credentials_path) or it is a
# tokenizer's vocabulary token (pad_token, eos_token).
SECRET_WORDS = ("password", "passwords", "passwd", "passphrase", "pass", "pwd", "secret", "secrets", "token",
                "apikey", "privatekey", "credential", "credentials", "creds", "auth", "authorization")
SECRET_PAIRS = {("api", "key"), ("private", "key")}
SECRET_META = {"path", "file", "filename", "dir", "url", "uri", "endpoint", "header", "field", "name", "type", "env",
               "var", "prompt", "pattern", "regex", "label", "length", "len", "col", "column", "method", "scheme",
               "mode", "kind", "format", "fmt"}
VOCAB_TOKENS = {"pad", "eos", "bos", "unk", "sep", "cls", "mask", "start", "end", "stop", "special", "additional"}
NAME_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# Placeholders for a secret, not a secret: <your-key>, ${DB_PASSWORD}, YOUR_API_KEY, xxxx.
PLACEHOLDER = re.compile(r"^(<[^<>]*>|\$\{?\w+\}?|\{\{.*\}\}|your[\w-]*|[\w-]*[_-]here|x{4,}|\*{4,}|\.{4,}|replace[_-]?me|todo|tbd|redacted)$", re.I)


def secret_name(name):
    words = [w.lower() for w in NAME_WORDS.findall(name)]
    if not words or words[-1] in SECRET_META:
        return False
    for i, w in enumerate(words):
        if i and (words[i - 1], w) in SECRET_PAIRS:
            return True
        if w.endswith(SECRET_WORDS) and not (w == "token" and i and words[i - 1] in VOCAB_TOKENS):
            return True
    return False


def secret_value(s):
    """Whether a literal may be a hard-coded secret: not too short, not a URL, a phrase
    or a placeholder."""
    return bool(s) and len(s) >= 4 and not s.startswith(("http://", "https://")) and " " not in s.strip() \
        and not PLACEHOLDER.match(s.strip())
# Environment variables holding credentials: a name with one of these words (GITHUB_TOKEN,
# OPENAI_API_KEY, PGPASSWORD), not any variable of a service (GITHUB_SHA, AWS_REGION).
SECRET_ENV = re.compile(r"(KEY(?!BOARD)|TOKEN|SECRET|PASS(?!ENGER)|CREDENTIAL|AUTH(?!ORS?(?![A-Z]))|COOKIE|(^|_)PAT(_|$))", re.I)
SECRET_VALUE = re.compile(
    r"(?<![A-Za-z0-9])(AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|sk-[A-Za-z0-9_-]{20,}|sk-ant-[A-Za-z0-9_-]{20,}|ghp_[A-Za-z0-9]{36}"
    r"|github_pat_[A-Za-z0-9_]{40,}|xox[baprs]-[A-Za-z0-9-]{10,}|-----BEGIN (RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----\s*([A-Za-z0-9+/=]{16}|Proc-Type:)"
    r"|AIza[0-9A-Za-z_-]{35})")
CRED_PATHS = re.compile(r"(\.aws/credentials|\.ssh/id_|\.netrc|/etc/shadow|\.docker/config\.json|\.kube/config|\.git-credentials|\.pgpass)")
SQL = re.compile(r"^\s*(with\s+(recursive\s+)?\w+\s*(\([^)]*\)\s*)?as\s*\(|select\s.+\sfrom\s|insert\s+into\s|update\s+\S+\s+set\s|delete\s+from\s|drop\s+table\s|create\s+table\s|alter\s+table\s|replace\s+into\s)", re.I | re.S)
SHELL_BINARIES = re.compile(r"^/bin/(ba|z|da|k)?sh$|^(ba|z|da)?sh$|^cmd(\.exe)?$|^powershell(\.exe)?$")
REVERSE_SHELL_STRINGS = re.compile(r"(/dev/tcp/|/dev/udp/|\bnc\s+(-\w+\s+)*-e\b|\bncat\b.*\s-e\b|bash\s+-i\s*>&|mkfifo\s+/tmp/\S+;\s*(nc|cat)|socat\s+.*exec:)", re.I)
DESTRUCTIVE_STRINGS = re.compile(r"(\brm\s+-(rf|fr|r\s+-f|f\s+-r)\s+(/|~|/\*|\$HOME)(\s|$|['\"])|\bmkfs(\.\w+)?\s+/dev/|\bdd\s+if=/dev/(zero|random|urandom)\s+of=/dev/[sh]d|:\(\)\s*\{\s*:\|:&\s*\};:|\bchmod\s+-R\s+777\s+/(\s|$))")
SENSITIVE_ROOTS = {"/", "/home", "/etc", "/usr", "/var", "/root", "~"}
YAML_LOADS = {"yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load", "yaml.unsafe_load_all"}
UNVERIFIED_CONTEXTS = {"ssl._create_unverified_context", "ssl._create_stdlib_context"}
IMPORT_CALLS = {"__import__", "builtins.__import__", "importlib.import_module", "importlib.__import__"}
# Modules whose import by a literal name still counts as a dynamic import.
EVASIVE_IMPORTS = {"os", "posix", "nt", "subprocess", "pty", "pickle", "cPickle", "_pickle", "marshal", "dill",
                   "shelve", "socket", "ctypes", "builtins", "importlib", "sys", "shutil", "commands", "popen2",
                   "code", "codeop", "runpy"}
BUILTIN_NAMES = {"eval", "exec", "compile", "getattr", "vars", "__import__", "dict"}
# KNOWN_NAMES are the qualified names the checks look for: a bare name brought in by a
# star import, or a local name assigned one of them, resolves to them.
KNOWN_NAMES = (SHELL_CALLS | SUBPROCESS_CALLS | NOSHELL_CALLS | PICKLE_CALLS | MARSHAL_CALLS | YAML_LOADS
               | UNVERIFIED_CONTEXTS | IMPORT_CALLS | BUILTIN_NAMES | {"builtins." + n for n in BUILTIN_NAMES}
               | {"torch.load", "os.dup2", "shutil.rmtree", "socket.create_connection", "os.environ", "os.getenv",
                  "os.getenvb", "os.chmod", "os.fchmod", "os.lchmod", "ssl.CERT_NONE", "sys.modules"})
KNOWN_MODULES = {n.split(".")[0] for n in KNOWN_NAMES if "." in n} | {"yaml", "stat", "ssl"}
# Calls that listen on an address given as an argument or in a (host, port) tuple.
LISTEN_CALLS = {"bind", "run", "listen", "serve", "create_server", "make_server", "start_server", "HTTPServer",
                "TCPServer", "ThreadingHTTPServer", "UDPServer", "ThreadingTCPServer"}


class Analyzer(ast.NodeVisitor):
    def __init__(self):
        self.aliases = {}        # local name -> qualified name
        self.findings = []
        self.tainted = set()     # names holding credentials
        self.taint_env = {}      # tainted name -> the environment variables it holds, None if others
        self.sockets = []        # calls of socket connect
        self.dup2 = []           # os.dup2 calls
        self.shell_spawn = []    # calls spawning a shell binary
        self.star_modules = []   # modules imported with "from m import *"
        self.defined = set()     # names bound in the code (def, class, assignment, argument)
        self.consts = {}         # name assigned once, to a constant -> the Constant node
        self.dicts = {}          # name assigned once, to a dict display or dict() -> the node
        self.sql_names = set()   # names assigned a query built from strings
        self.marks = set()       # names assigned a list of parameter placeholders, "?, ?, ?"
        self.inert = set()       # ids of strings that are never run: docstrings, operands of ==, in
        self.splatted = set()    # ids of dict() calls passed as **kwargs (checked at the call)

    # --- helpers ---
    def add(self, check, node, message):
        self.findings.append({
            "check": check, "line": node.lineno, "col": node.col_offset,
            "end_line": getattr(node, "end_lineno", node.lineno) or node.lineno,
            "end_col": getattr(node, "end_col_offset", node.col_offset) or node.col_offset,
            "message": message,
        })

    def name_of(self, ident):
        """Qualified name of a bare name: its import alias, or what a star import brings."""
        q = self.aliases.get(ident)
        if q is not None:
            return q
        if ident == "__builtins__":
            return "builtins"
        if self.star_modules and ident not in self.defined:
            for m in self.star_modules:
                cand = m + "." + ident
                if cand in KNOWN_NAMES or (m == "stat" and ident.startswith("S_")):
                    return cand
        return ident

    def qualname(self, node):
        """Dotted name of a Name/Attribute chain with import aliases resolved. Lookups
        with literal names count as attribute access: getattr(os, 'system'),
        os.__dict__['system'], vars(os)['system'], __builtins__['exec'],
        sys.modules['os'], __import__('os') and importlib.import_module('os')."""
        parts = []
        while True:
            if isinstance(node, ast.Attribute):
                parts.append(node.attr)
                node = node.value
            elif isinstance(node, ast.Subscript):
                key = self.literal_str(node.slice)
                base = node.value
                if key is None:
                    return None
                if isinstance(base, ast.Attribute) and base.attr == "__dict__":
                    parts.append(key)
                    node = base.value
                elif isinstance(base, ast.Call) and len(base.args) == 1 and self.qualname(base.func) in ("vars", "builtins.vars"):
                    parts.append(key)
                    node = base.args[0]
                else:
                    bq = self.qualname(base)
                    if bq == "sys.modules":
                        parts.append(key)
                    elif bq == "builtins":
                        parts += [key, "builtins"]
                    else:
                        return None
                    return ".".join(reversed(parts))
            else:
                break
        if isinstance(node, ast.Name):
            parts.append(self.name_of(node.id))
        elif isinstance(node, ast.Call):
            inner = self.qualname(node.func)
            if inner is None:
                return None
            resolved = None
            if inner in ("getattr", "builtins.getattr") and len(node.args) in (2, 3):
                attr = self.literal_str(node.args[1])
                obj = self.qualname(node.args[0]) if attr is not None else None
                if obj is not None:
                    resolved = obj + "." + attr
            elif inner in IMPORT_CALLS and node.args:
                mod = self.literal_str(node.args[0])
                if mod:
                    # __import__('a.b') gives the package a unless a fromlist is passed.
                    top = inner.endswith("__import__") and len(node.args) < 4 and self.kwarg(node, "fromlist") is None
                    resolved = mod.split(".")[0] if top else mod
            parts.append(resolved or inner + "()")
        else:
            return None
        return ".".join(reversed(parts))

    def kwarg(self, call, name):
        """The value passed as name=, directly or in a **{...} / **dict(...) (or a name
        assigned one once)."""
        splat = False
        for k in call.keywords:
            if k.arg == name:
                return k.value
            splat = splat or k.arg is None
        if not splat:
            return None
        for k in call.keywords:
            if k.arg is not None:
                continue
            d = k.value
            if isinstance(d, ast.Name):
                d = self.dicts.get(d.id, d)
            if isinstance(d, ast.Dict):
                for key, v in zip(d.keys, d.values):
                    if key is not None and self.const_str(key) == name:
                        return v
            elif isinstance(d, ast.Call) and self.qualname(d.func) in ("dict", "builtins.dict"):
                for kk in d.keywords:
                    if kk.arg == name:
                        return kk.value
        return None

    def literal_str(self, node):
        """The string node evaluates to when that is certain: a literal, literals joined
        with + or in an f-string, or a name assigned a literal once."""
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else None
        if isinstance(node, ast.Name):
            c = self.consts.get(node.id)
            return c.value if c is not None and isinstance(c.value, str) else None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            a = self.literal_str(node.left)
            b = self.literal_str(node.right) if a is not None else None
            return a + b if b is not None else None
        if isinstance(node, ast.JoinedStr) and all(isinstance(v, ast.Constant) for v in node.values):
            return "".join(v.value for v in node.values)
        return None

    def truthy(self, node):
        """Whether node is certainly true (True), certainly false (False), or unknown
        (None): a literal, a display, or a name assigned a literal once."""
        if isinstance(node, ast.Name) and node.id in self.consts:
            node = self.consts[node.id]
        if isinstance(node, ast.Constant):
            return bool(node.value)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            return bool(node.elts)
        if isinstance(node, ast.Dict):
            return bool(node.keys)
        return None

    def int_value(self, node):
        """The integer node evaluates to when certain: a literal, a stat.S_* constant, a
        name assigned an integer once, or these combined with |, +, ^ and &."""
        if isinstance(node, ast.Constant):
            return node.value if type(node.value) is int else None
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitOr, ast.Add, ast.BitXor, ast.BitAnd)):
            a = self.int_value(node.left)
            b = self.int_value(node.right) if a is not None else None
            if b is None:
                return None
            op = type(node.op)
            return a | b if op is ast.BitOr else a + b if op is ast.Add else a ^ b if op is ast.BitXor else a & b
        if isinstance(node, ast.Name) and node.id in self.consts:
            return self.int_value(self.consts[node.id])
        if isinstance(node, (ast.Name, ast.Attribute)):
            q = self.qualname(node) or ""
            if q.startswith("stat.S_"):
                v = getattr(stat, q[5:], None)
                return v if type(v) is int else None
        return None

    @staticmethod
    def const_str(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return None

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

    def secret_env(self, node):
        """The environment variables, named by literals, whose credentials node carries
        (as carries_secret finds them); None when it may carry others: the whole
        environment, a variable with a computed name, or a credentials file."""
        if isinstance(node, ast.Name):
            if node.id in self.tainted:
                return self.taint_env.get(node.id)
            return None if self.aliases.get(node.id) == "os.environ" else set()
        key = None
        if isinstance(node, ast.Subscript) and self.qualname(node.value) == "os.environ":
            key = node.slice
        elif isinstance(node, ast.Call):
            q = self.qualname(node.func) or ""
            if q in ("os.getenv", "os.environ.get", "os.getenvb"):
                if not node.args:
                    return set()
                key = node.args[0]
            elif q in ("os.environ.copy", "os.environ.items", "os.environ.values") or \
                    (q.endswith((".read", ".read_text", ".readlines", ".read_bytes")) and self.reads_cred_file(node.func)):
                return None
        elif isinstance(node, ast.Attribute) and self.qualname(node) == "os.environ":
            return None
        if key is not None:
            k = self.const_str(key)
            return None if k is None else {k} if SECRET_ENV.search(k) else set()
        out = set()
        for c in ast.iter_child_nodes(node):
            e = self.secret_env(c)
            if e is None:
                return None
            out |= e
        return out

    def url_host(self, node):
        """The host of an https URL whose scheme and host are literal, else None:
        "https://api.github.com/...", f"https://api.github.com/repos/{repo}", or BASE + "/x"
        with BASE assigned such a literal once."""
        text, whole = "", True
        parts = node.values if isinstance(node, ast.JoinedStr) else [node]
        for v in parts:
            if isinstance(v, ast.FormattedValue):
                v = v.value if v.conversion == -1 and v.format_spec is None else None
            lit = self.literal_str(v) if v is not None else None
            if lit is None and isinstance(v, ast.BinOp) and isinstance(v.op, ast.Add):
                lit, whole = self.literal_str(v.left), False
            if lit is None:
                whole = False
                break
            text += lit
            if not whole:
                break
        m = re.match(r"https://([^/?#]+)" + ("([/?#]|$)" if whole else "[/?#]"), text)
        if not m or "@" in m.group(1) or "\\" in m.group(1):
            return None
        return m.group(1).split(":")[0].lower().rstrip(".")

    def authenticates(self, node):
        """Whether a request sends the credentials only as its authentication (headers=
        or auth=) to the service the environment variables are named for: OPENAI_API_KEY
        to https://api.openai.com/..., GITHUB_TOKEN to https://api.github.com/...."""
        env = set()
        for k in node.keywords:
            if self.carries_secret(k.value):
                e = self.secret_env(k.value) if k.arg in ("headers", "auth") else None
                if e is None:
                    return False
                env |= e
        if not env or any(self.carries_secret(a) for a in node.args[1:]):
            return False
        url = self.kwarg(node, "url")
        if url is None and node.args:
            url = node.args[0]
        if url is None or self.carries_secret(url):
            return False
        host = self.url_host(url)
        labels = host.split(".") if host else []
        if len(labels) < 2 or labels[-1] not in ("com", "ai"):
            return False
        return all(e.split("_")[0].lower() == labels[-2] for e in env)

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
        if secret_value(s) and any(secret_name(n) for n in names) and not SECRET_VALUE.search(s):
            self.add("B105", value, "hard-coded password or secret assigned to %s" % ", ".join(names))
        vq = self.qualname(value) if isinstance(value, (ast.Attribute, ast.Name)) else None
        if vq in UNVERIFIED_CONTEXTS:
            self.add("B323", value, "%s assigned: TLS certificate verification is turned off" % vq)
        elif vq == "ssl.CERT_NONE" and any(isinstance(t, ast.Attribute) and t.attr == "verify_mode" for t in targets):
            self.add("B323", value, "verify_mode = ssl.CERT_NONE turns TLS certificate verification off")
        if self.carries_secret(value):
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        env = self.secret_env(value)
                        if n.id in self.tainted:
                            old = self.taint_env.get(n.id)
                            env = None if env is None or old is None else env | old
                        self.tainted.add(n.id)
                        self.taint_env[n.id] = env

    def visit_FunctionDef(self, node):
        args = node.args
        defaults = list(zip(args.args[len(args.args) - len(args.defaults):], args.defaults))
        defaults += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
        for a, d in defaults:
            s = self.const_str(d)
            if secret_value(s) and secret_name(a.arg):
                self.add("B107", d, "hard-coded password or secret as the default of argument %s" % a.arg)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Constant(self, node):
        if isinstance(node.value, str):
            v = node.value
            if SECRET_VALUE.search(v):
                self.add("secret-literal", node, "string literal looks like a credential (%s…)" % SECRET_VALUE.search(v).group(0)[:8])
            if id(node) in self.inert:
                return
            if REVERSE_SHELL_STRINGS.search(v):
                self.add("reverse-shell", node, "string holds a reverse-shell command: %r" % v[:80])
            if DESTRUCTIVE_STRINGS.search(v):
                self.add("destructive", node, "string holds a destructive shell command: %r" % v[:80])

    def visit_Call(self, node):
        q = self.qualname(node.func) or ""
        short = q.rsplit(".", 1)[-1]
        shell = self.kwarg(node, "shell")
        for k in node.keywords:
            if k.arg is None and isinstance(k.value, ast.Call):
                self.splatted.add(id(k.value))

        if q in SUBPROCESS_CALLS or q.startswith("subprocess."):
            # As Bandit: a shell= that is not certainly false counts as true.
            if shell is not None and self.truthy(shell) is not False:
                self.add("B602", node, "%s called with shell=True: the command line is interpreted by a shell" % q)
            else:
                self.check_shell_binary(node, q)
        elif shell is not None and self.truthy(shell) is True and id(node) not in self.splatted:
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
        if q in YAML_LOADS:
            loader = self.kwarg(node, "Loader")
            if loader is None and len(node.args) >= 2:
                loader = node.args[1]
            lname = (self.qualname(loader) or "") if loader is not None else ""
            # Safe only when it is yaml's own safe loader, not a local name that says so.
            safe = lname.split(".")[0] == "yaml" and lname.rsplit(".", 1)[-1] in SAFE_YAML_LOADERS
            if q.startswith("yaml.unsafe") or not safe:
                self.add("B506", node, "%s without a safe Loader can construct arbitrary objects" % q)
        if q in ("torch.load",):
            wo = self.kwarg(node, "weights_only")
            if wo is None or self.truthy(wo) is not True:
                self.add("B614", node, "torch.load without weights_only=True unpickles arbitrary objects")
        if q.split(".")[0] in ("requests", "httpx") or short in ("get", "post", "put", "patch", "delete", "request", "head", "Client", "AsyncClient", "Session"):
            v = self.kwarg(node, "verify")
            if v is not None and self.truthy(v) is False:
                self.add("B501", node, "%s with verify=False: TLS certificates are not checked" % q)
        if q in UNVERIFIED_CONTEXTS:
            self.add("B323", node, "%s turns TLS certificate verification off" % q)
        cert_reqs = self.kwarg(node, "cert_reqs")
        if cert_reqs is not None and self.qualname(cert_reqs) == "ssl.CERT_NONE":
            self.add("B323", node, "%s with cert_reqs=ssl.CERT_NONE: TLS certificates are not checked" % q)
        for k in node.keywords:
            if k.arg and secret_name(k.arg):
                s = self.const_str(k.value)
                if secret_value(s):
                    self.add("B106", k.value, "hard-coded password or secret passed as %s=" % k.arg)
        # Binding all interfaces: the address is an argument, host=, or the first item of
        # a (host, port) tuple; strings deeper inside (a command's argv) are not addresses.
        host = self.kwarg(node, "host")
        if short in LISTEN_CALLS or host is not None:
            cands = [host] if host is not None else []
            if short in LISTEN_CALLS:
                for a in node.args:
                    cands += a.elts[:1] if isinstance(a, ast.Tuple) else [a]
            for n in cands:
                s = self.literal_str(n)
                if s in ("0.0.0.0", "::") or (s == "" and short == "bind" and n is not host):
                    self.add("B104", n, "binds to all network interfaces (%r)" % s)
                    break
        # World-writable permissions.
        if short in ("chmod", "fchmod", "lchmod"):
            pos = 1 if q.startswith("os.") else 0
            mode = node.args[pos] if len(node.args) > pos else self.kwarg(node, "mode")
            value = self.int_value(mode) if mode is not None else None
            if value is not None and value & stat.S_IWOTH:
                self.add("B103", node, "chmod to mode %s makes the file world-writable" % oct(value))
        # SQL built from strings.
        # text() makes SQL in SQLAlchemy; streamlit's st.text and pyplot's plt.text show text.
        other_text = short == "text" and q.split(".")[0] in ("streamlit", "matplotlib", "pylab")
        if short in ("execute", "executemany", "executescript", "raw", "text", "read_sql", "read_sql_query") and node.args \
                and not other_text:
            if self.built_sql(node.args[0]):
                self.add("B608", node.args[0], "SQL query built from strings: use parameters")
        # Dynamic imports.
        # A literal name is a static import, unless it is a module that runs processes or
        # code (__import__('os')), which is how such calls are hidden.
        if q in ("__import__", "builtins.__import__", "importlib.import_module", "importlib.__import__"):
            mod = self.literal_str(node.args[0]) if node.args else None
            if mod is None or mod.split(".")[0] in EVASIVE_IMPORTS:
                self.add("dynamic-import", node, "%s imports a module chosen at run time" % q)
        # Destructive file operations.
        if q in ("shutil.rmtree",) and node.args:
            s = self.const_str(node.args[0])
            if s is not None and s.rstrip("/") in {r.rstrip("/") for r in SENSITIVE_ROOTS} | {""}:
                self.add("destructive", node, "shutil.rmtree(%r) deletes a system tree" % s)
        # Reverse shells: a socket connected to a remote end with its descriptors given
        # to a shell.
        if q in ("socket.create_connection",) or (short == "connect" and self.socket_connect(node, q)):
            self.sockets.append(node)
        if q == "os.dup2":
            self.dup2.append(node)
        # Credentials sent over the network.
        if NETWORK_CALLS.search(q) and q not in ("os.environ.get", "dict.get") and not q.endswith("environ.get"):
            if any(self.carries_secret(a) for a in list(node.args) + [k.value for k in node.keywords]) \
                    and not self.authenticates(node):
                self.add("exfiltration", node, "%s sends credentials read from the environment or a credentials file" % q)
        self.generic_visit(node)

    def socket_connect(self, node, q):
        """Whether a .connect() call may connect a socket to a remote end: it is given an
        address that is not a string (a socket's remote address is a (host, port) tuple),
        and is not a function of a module other than socket's (sqlite3.connect)."""
        if not node.args or self.literal_str(node.args[0]) is not None:
            return False
        root = q.split(".")[0]
        modules = {v.split(".")[0] for v in self.aliases.values()}
        return root not in modules or root in ("socket", "ssl", "_socket")

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
        """A query made by concatenation, %-formatting, .format() or an f-string with a
        value that is not a literal (literals joined together are a fixed query)."""
        def literal_text(n):
            out = []
            for x in ast.walk(n):
                s = self.const_str(x)
                if s is None and isinstance(x, ast.Name):
                    s = self.literal_str(x)
                if s is not None:
                    out.append((getattr(x, "lineno", 0), getattr(x, "col_offset", 0), s))
            # In source order (ast.walk is breadth first); a sort that keeps the order of
            # equal positions, as the parts of an f-string may all have the f-string's.
            return "".join(s for _, _, s in sorted(out, key=lambda t: t[:2]))

        def dynamic(n):
            todo = [n]  # not recursive: a long chain of + stays within the recursion limit
            while todo:
                x = todo.pop()
                if self.placeholders(x):
                    continue
                if isinstance(x, (ast.Call, ast.Attribute, ast.Subscript)) \
                        or (isinstance(x, ast.Name) and self.literal_str(x) is None):
                    return True
                todo.extend(ast.iter_child_nodes(x))
            return False
        if isinstance(node, ast.JoinedStr):
            return any(isinstance(v, ast.FormattedValue) and dynamic(v.value) for v in node.values) \
                and bool(SQL.search(literal_text(node)))
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
            return dynamic(node) and bool(SQL.search(literal_text(node)))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            return any(dynamic(a) for a in list(node.args) + [k.value for k in node.keywords]) \
                and bool(SQL.search(literal_text(node.func.value)))
        if isinstance(node, ast.Name):
            return node.id in self.sql_names
        return False

    def placeholders(self, node):
        """Whether node is only parameter placeholders joined, as an IN list is made:
        ", ".join("?" * len(ids)), ",".join(["%s"] * n), ",".join("?" for _ in ids), or a
        name assigned one once. Whatever the count, it inserts no value in the query."""
        if isinstance(node, ast.Name):
            return node.id in self.marks
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join"
                and len(node.args) == 1 and not node.keywords):
            return False
        sep, x = self.const_str(node.func.value), node.args[0]
        if sep is None or sep.strip(", ") != "":
            return False
        def mark(n):
            return self.const_str(n) in ("?", "%s")
        if isinstance(x, ast.BinOp) and isinstance(x.op, ast.Mult):  # "?" * n, ["?"] * n: n must be an int
            return any(mark(a) or (isinstance(a, (ast.List, ast.Tuple)) and len(a.elts) == 1 and mark(a.elts[0]))
                       for a in (x.left, x.right))
        if isinstance(x, (ast.ListComp, ast.GeneratorExp)):
            return mark(x.elt)
        return isinstance(x, (ast.List, ast.Tuple)) and all(mark(e) for e in x.elts)

    def finish(self):
        if self.sockets and (self.dup2 or self.shell_spawn):
            target = (self.dup2 or self.shell_spawn)[0]
            self.add("reverse-shell", target, "a socket is connected out and its descriptors are handed to a shell (reverse shell)")


def prepare(tree, an):
    """One pass before the checks, so what a name stands for is known wherever it is
    used: import aliases, star imports, the names the code binds, and names assigned
    once to a constant, a dict, a module or a checked callable (f = eval), or a query
    built from strings (so cursor.execute(q) is caught too)."""
    counts = {}
    assigns = []
    Name, Store, Assign = ast.Name, ast.Store, ast.Assign
    for n in ast.walk(tree):
        t = type(n)
        if t is Name:
            if type(n.ctx) is Store:
                counts[n.id] = counts.get(n.id, 0) + 1
        elif t is Assign:
            if len(n.targets) == 1 and type(n.targets[0]) is Name:
                assigns.append(n)
        elif t is ast.Expr:
            if type(n.value) is ast.Constant:
                an.inert.add(id(n.value))
        elif t is ast.Compare:
            an.inert.update(id(c) for c in [n.left] + n.comparators if type(c) is ast.Constant)
        elif t is ast.Import:
            an.visit_Import(n)
        elif t is ast.ImportFrom:
            if n.module and any(a.name == "*" for a in n.names):
                an.star_modules.append(n.module)
            an.visit_ImportFrom(n)
        elif t in (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef):
            counts[n.name] = counts.get(n.name, 0) + 2  # bound, and not by one assignment
        elif t is ast.arg:
            counts[n.arg] = counts.get(n.arg, 0) + 2
    an.defined = set(counts) | set(an.aliases)
    modules = {q.split(".")[0] for q in an.aliases.values()} | KNOWN_MODULES | {"builtins"}
    for n in assigns:
        if counts.get(n.targets[0].id) == 1 and an.placeholders(n.value):
            an.marks.add(n.targets[0].id)
    for n in assigns:
        name, v = n.targets[0].id, n.value
        if counts.get(name) == 1:
            if isinstance(v, ast.Constant):
                an.consts[name] = v
            elif isinstance(v, ast.Dict) or (isinstance(v, ast.Call) and an.qualname(v.func) in ("dict", "builtins.dict")):
                an.dicts[name] = v
            elif isinstance(v, (ast.Name, ast.Attribute, ast.Subscript, ast.Call)) and name not in an.aliases:
                q = an.qualname(v)
                if q and "()" not in q and (q in KNOWN_NAMES or q.split(".")[0] in modules):
                    an.aliases[name] = q
        if an.built_sql(v):
            an.sql_names.add(name)


def analyze(code):
    tree = ast.parse(code, mode="exec")
    an = Analyzer()
    prepare(tree, an)
    an.findings = []
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
