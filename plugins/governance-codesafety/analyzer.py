# The limit-governance-codesafety plugin's analyzer: it parses Python code with the
# standard library's ast module and reports the patterns Bandit and Semgrep flag.
#
# Protocol: one JSON object per line on stdin, {"id": N, "code": "..."}; one JSON object
# per line on stdout, {"id": N, "findings": [...], "total": T}, or for code that does not
# parse {"id": N, "syntax_error": "...", "syntax_line": L, "python": "3.11.2", "hint": "...",
# "skipped": [lines], "findings": [...], "total": T} (the findings of the code with the
# lines that do not parse skipped, see repaired), or {"id": N, "limit": "..."} for code
# beyond the analyzer's resources. Each finding: {"check", "line", "col", "end_line",
# "end_col", "message"}; columns are UTF-8 byte offsets, as ast gives them. The plugin
# maps checks to flags and severities.
import ast
import base64
import binascii
import codecs
import json
import re
import stat
import string
import sys

# MAX_FINDINGS caps the findings returned for one code (the total is returned too).
MAX_FINDINGS = 200

# Names and command strings computed from constants ("sys" + "tem", "metsys"[::-1],
# base64.b64decode("...").decode()) are folded (Analyzer.fold) through at most FOLD_DEPTH
# nested expressions and names; the folds of one analysis make at most FOLD_BUDGET bytes
# (FOLD_BUDGET_PER_BYTE times the code's size, at least FOLD_BUDGET_MIN), which literals
# joined never reach: only names used again and again, repetition and decoding do. An
# expression beyond these bounds is OVER: where it names a callable or a module, or is
# a string that may run, the analysis stops with a Limit, as for code too deep to parse.
FOLD_DEPTH = 64
FOLD_BUDGET_MIN = 1 << 20
FOLD_BUDGET_PER_BYTE = 4
OVER = type("Over", (), {"__repr__": lambda self: "OVER"})()
MISSING = object()
OVER_MESSAGE = "a string computed from constants is too large or too deeply nested to follow"
INT_OPS = (ast.BitOr, ast.Add, ast.BitXor, ast.BitAnd, ast.Sub, ast.Mult, ast.Pow, ast.LShift)
# Methods of str and bytes that fold (Analyzer.fold_call); STRIP_METHODS take one argument.
FOLD_METHODS = {"join", "format", "decode", "encode", "replace", "lower", "upper", "strip", "lstrip", "rstrip",
                "swapcase", "casefold", "title", "capitalize"}
STRIP_METHODS = {"strip", "lstrip", "rstrip"}
# Encodings .decode() and .encode() fold in (after lower case, "_" as "-").
TEXT_ENCODINGS = {"utf-8", "utf8", "ascii", "us-ascii", "latin-1", "latin1", "iso-8859-1", "iso8859-1", "cp1252",
                  "utf-16", "utf-16-le", "utf-16-be", "utf-32"}
# Codecs codecs.decode and codecs.encode fold in (after lower case, "-" as "_"): not
# zlib or bz2, whose output may be a thousand times their input.
CODECS = {"rot13", "rot_13", "hex", "hex_codec", "base64", "base64_codec", "base_64", "utf_8", "utf8", "ascii",
          "latin_1", "latin1", "iso8859_1"}
FOLD_DECODERS = {
    "base64.b64decode": base64.b64decode, "base64.standard_b64decode": base64.standard_b64decode,
    "base64.urlsafe_b64decode": base64.urlsafe_b64decode, "base64.b32decode": base64.b32decode,
    "base64.b16decode": base64.b16decode, "base64.b85decode": base64.b85decode, "base64.a85decode": base64.a85decode,
    "base64.decodebytes": base64.decodebytes, "binascii.unhexlify": binascii.unhexlify,
    "binascii.a2b_hex": binascii.a2b_hex, "binascii.a2b_base64": binascii.a2b_base64,
    "bytes.fromhex": bytes.fromhex, "bytearray.fromhex": bytearray.fromhex,
}

SHELL_CALLS = {
    "os.system", "os.popen", "os.popen2", "os.popen3", "os.popen4",
    "popen2.popen2", "popen2.popen3", "popen2.popen4", "popen2.Popen3", "popen2.Popen4",
    "commands.getoutput", "commands.getstatusoutput", "subprocess.getoutput",
    "subprocess.getstatusoutput", "asyncio.create_subprocess_shell",
}
SUBPROCESS_CALLS = {
    "subprocess.Popen", "subprocess.call", "subprocess.check_call", "subprocess.check_output",
    "subprocess.run", "asyncio.create_subprocess_exec",
}
NOSHELL_CALLS = {
    "os.execl", "os.execle", "os.execlp", "os.execlpe", "os.execv", "os.execve", "os.execvp",
    "os.execvpe", "os.spawnl", "os.spawnle", "os.spawnlp", "os.spawnlpe", "os.spawnv",
    "os.spawnve", "os.spawnvp", "os.spawnvpe", "os.startfile", "os.posix_spawn", "os.posix_spawnp",
    "pty.spawn",
}
PICKLE_CALLS = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.load", "cPickle.loads",
    "cPickle.Unpickler", "_pickle.load", "_pickle.loads", "dill.load", "dill.loads",
    "shelve.open", "jsonpickle.decode", "pandas.read_pickle", "joblib.load", "cloudpickle.load", "cloudpickle.loads",
    "dill.Unpickler", "_pickle.Unpickler",
}
MARSHAL_CALLS = {"marshal.load", "marshal.loads"}
# Calls that run a string of code as exec() does (B102): profilers, timers and
# interactive interpreters given statements as text.
EXEC_CALLS = {"timeit.timeit", "timeit.repeat", "timeit.Timer", "cProfile.run", "cProfile.runctx", "profile.run",
              "profile.runctx", "pdb.run", "pdb.runeval", "pdb.runctx", "code.InteractiveInterpreter().runsource",
              "code.InteractiveInterpreter().runcode", "code.InteractiveConsole().runsource",
              "code.InteractiveConsole().runcode", "code.InteractiveConsole().push"}
# Functions of the C library reached through ctypes (ctypes.CDLL("libc.so.6").system):
# the same as the os module's.
LIBC_SHELL = {"system", "popen"}
LIBC_EXEC = {"execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp", "posix_spawn", "posix_spawnp"}
# Callables that are reported where they are used as a value (stored, passed, returned:
# map(exec, ...), {"r": os.system}, class E: run = exec) rather than called, by the check
# of their call: they may be called under another name the analysis does not follow.
VALUE_CHECKS = dict([(q, "B605") for q in SHELL_CALLS] + [(q, "B606") for q in NOSHELL_CALLS]
                    + [(q, "B301") for q in PICKLE_CALLS] + [(q, "B302") for q in MARSHAL_CALLS]
                    + [(q, "B307") for q in ("eval", "builtins.eval")]
                    + [(q, "B102") for q in ("exec", "builtins.exec")])
# Modules that are os under another name: os re-exports posix (nt on Windows).
OS_MODULES = {"posix", "nt"}
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
               "mode", "kind", "format", "fmt", "hint", "placeholder", "help", "description"}
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


# Values a key or a name compared with holds that say what kind of credential it is, not
# the credential: auth == "basic", {"token": "bearer"}.
CREDENTIAL_KINDS = {"basic", "bearer", "digest", "token", "oauth", "oauth1", "oauth2", "ntlm", "kerberos", "negotiate",
                    "hmac", "jwt", "none", "null", "apikey", "api_key", "password", "secret", "anonymous", "session"}


def secret_value(s):
    """Whether a literal may be a hard-coded secret: not too short, not a URL, a phrase
    or a placeholder."""
    return bool(s) and len(s) >= 4 and not s.startswith(("http://", "https://")) and " " not in s.strip() \
        and not PLACEHOLDER.match(s.strip())


def secret_literal(s):
    """Whether a literal in a comparison or a dict may be a hard-coded secret: as
    secret_value, and not a kind of credential ("basic", "bearer") or a name of one (an
    environment variable, "OPENAI_API_KEY", or a field, "api_key"), as such code holds; and
    it must look made to be hard to guess: 8 characters or more, with a digit, a symbol or
    both cases. A word is what a lexer's token, a game's secret word or a compass heading
    is compared with (token == "while", secret_word == "python"), not a credential."""
    if not secret_value(s) or SECRET_VALUE.search(s) or s.lower() in CREDENTIAL_KINDS:
        return False
    if len(s) < 8 or not (re.search(r"[0-9]", s) or re.search(r"[^A-Za-z0-9]", s)
                          or (re.search(r"[a-z]", s) and re.search(r"[A-Z]", s))):
        return False
    if re.match(r"^([A-Z][A-Z0-9]*(_[A-Z0-9]+)+|[a-z]+(_[a-z]+)+)$", s) and (secret_name(s) or SECRET_ENV.search(s)):
        return False
    return True


# Environment variables holding credentials: a name with one of these words (GITHUB_TOKEN,
# OPENAI_API_KEY, PGPASSWORD), not any variable of a service (GITHUB_SHA, AWS_REGION).
SECRET_ENV = re.compile(r"(KEY(?!BOARD)|TOKEN|SECRET|PASS(?!ENGER)|CREDENTIAL|AUTH(?!ORS?(?![A-Z]))|COOKIE|(^|_)PAT(_|$))", re.I)
SECRET_VALUE = re.compile(
    r"(?<![A-Za-z0-9])(AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|sk-[A-Za-z0-9_-]{20,}|sk-ant-[A-Za-z0-9_-]{20,}|ghp_[A-Za-z0-9]{36}"
    r"|github_pat_[A-Za-z0-9_]{40,}|xox[baprs]-[A-Za-z0-9-]{10,}|-----BEGIN (RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----\s*([A-Za-z0-9+/=]{16}|Proc-Type:)"
    r"|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{30,})")
# An Authorization header's value with its credential: "Bearer abcd1234efgh5678".
AUTH_HEADER_VALUE = re.compile(r"^(Bearer|Token|Basic|Bot)\s+(\S{8,})$", re.I)
# SERVICE_HOSTS names the hosts of well-known services whose credentials programs read
# from environment variables named for the service: a variable whose name is a stem, or
# starts with a stem and "_", authenticates to the stem's hosts ("*.x" is any subdomain
# of x). Each host is the service's documented API endpoint. Other services are matched
# by the variable's first word and the host's domain (OPENAI_API_KEY to *.openai.com);
# the table holds the services that rule misses (TELEGRAM_BOT_TOKEN to api.telegram.org,
# JIRA_API_TOKEN to *.atlassian.net) and pins the common ones to their API hosts.
SERVICE_HOSTS = (
    ("TELEGRAM", ("api.telegram.org",)),
    ("BOT_TOKEN", ("api.telegram.org",)),  # the name python-telegram-bot's examples use
    ("JIRA", ("*.atlassian.net", "api.atlassian.com")),
    ("ATLASSIAN", ("*.atlassian.net", "api.atlassian.com")),
    ("CONFLUENCE", ("*.atlassian.net", "api.atlassian.com")),
    ("SLACK", ("slack.com", "*.slack.com")),
    ("GITHUB", ("api.github.com", "uploads.github.com")),
    ("GH", ("api.github.com", "uploads.github.com")),
    ("GITLAB", ("gitlab.com",)),
    ("OPENAI", ("api.openai.com",)),
    ("ANTHROPIC", ("api.anthropic.com",)),
    ("HF", ("huggingface.co", "*.huggingface.co")),
    ("HUGGINGFACE", ("huggingface.co", "*.huggingface.co")),
    ("HUGGING_FACE", ("huggingface.co", "*.huggingface.co")),
    ("STRIPE", ("api.stripe.com",)),
    ("TWILIO", ("api.twilio.com",)),
    ("SENDGRID", ("api.sendgrid.com",)),
    ("DISCORD", ("discord.com", "discordapp.com")),
)
# Destinations no API client authenticates to: services that capture requests, hold
# pastes or files for anyone, or tunnel to anyone's machine; and the paths of chat services
# that post what they are sent where their creator reads it (a Discord or Slack webhook, a
# Telegram bot). A credential sent there, even as a header, is exfiltration. "h" is h and
# its subdomains; "h/p" the paths under p on them.
EXFIL_HOSTS = (
    "pastebin.com", "paste.ee", "pastes.io", "hastebin.com", "ghostbin.com", "dpaste.com", "dpaste.org",
    "rentry.co", "termbin.com", "ix.io", "sprunge.us", "0x0.st", "transfer.sh", "file.io", "tmpfiles.org",
    "webhook.site", "requestbin.com", "requestbin.net", "pipedream.net", "beeceptor.com", "hookbin.com",
    "requestcatcher.com", "mockbin.org", "postb.in", "ptsv2.com", "ptsv3.com",
    "ngrok.io", "ngrok.app", "ngrok-free.app", "ngrok.dev", "ngrok-free.dev", "loca.lt", "localtunnel.me",
    "serveo.net", "localhost.run", "lhr.life", "trycloudflare.com", "pinggy.io", "bore.pub",
    "burpcollaborator.net", "oastify.com", "interact.sh", "oast.fun", "oast.pro", "oast.live", "oast.site",
    "oast.online", "oast.me", "dnslog.cn", "canarytokens.com",
    "discord.com/api/webhooks", "discordapp.com/api/webhooks", "hooks.slack.com", "api.telegram.org/bot",
)


def exfil_host(host, path):
    """Whether a URL's host (and the literal path after it) is one of EXFIL_HOSTS."""
    for e in EXFIL_HOSTS:
        h, _, p = e.partition("/")
        if (host == h or host.endswith("." + h)) and (not p or path.startswith("/" + p)):
            return True
    return False


def service_domains(var):
    """The domains of the service an environment variable is named for: of its
    SERVICE_HOSTS, and its first word's .com and .ai (OPENAI_API_KEY: openai.com, openai.ai).
    A host that holds one without being the service's imitates it."""
    var = var.upper()
    out = set()
    word = var.split("_")[0].lower()
    if len(word) >= 4 and word not in GENERIC_WORDS:
        out |= {word + ".com", word + ".ai"}
    for stem, hosts in SERVICE_HOSTS:
        if var == stem or var.startswith(stem + "_"):
            out |= {".".join(h.split(".")[-2:]) for h in hosts}
    return out


# First words of variable names that name no service (API_KEY, ACCESS_TOKEN).
GENERIC_WORDS = {"api", "access", "auth", "secret", "token", "bearer", "client", "private", "personal", "user",
                 "service", "app", "application", "bot", "default", "prod", "production", "staging", "dev",
                 "test", "local", "remote", "admin", "master", "root", "session", "refresh", "oauth", "http",
                 "https", "proxy", "password", "passwd", "key", "keys", "my", "the", "x", "web", "server"}
# Credentials that sign requests or decrypt and are never sent as themselves: an AWS secret
# key signs (SigV4), a private key signs or decrypts, a webhook secret checks signatures.
SIGNING_SECRETS = re.compile(r"SECRET_ACCESS_KEY|PRIVATE_KEY|SIGNING_(KEY|SECRET)|WEBHOOK_SECRET|ENCRYPTION_KEY"
                             r"|SSH_KEY|GPG_KEY|PGP_KEY", re.I)
# MAX_SENT_CREDENTIALS is the most named credentials one request sends as authentication
# (a key and an application key); more is harvesting.
MAX_SENT_CREDENTIALS = 2
# urllib's request objects: urlopen(Request(url, headers=...)) sends what the Request was made
# with, judged where it is made.
URLLIB_REQUESTS = {"urllib.request.Request", "urllib2.Request"}


class Route:
    """How a request sends credentials (see Analyzer.route): env, the environment variables
    (None when unknown); places, a set of "auth", "url" and "body"; the URL's scheme, host
    and literal path; judged, a urllib Request the request sends, checked where it is made."""

    def __init__(self):
        self.env = set()
        self.places = set()
        self.scheme = self.host = None
        self.path = ""
        self.judged = False

    def add(self, env, place):
        self.places.add(place)
        self.env = None if env is None or self.env is None else self.env | env


CRED_PATHS = re.compile(r"(/proc/(self|\d+|thread-self)/environ|\.aws/credentials|\.ssh/id_|\.netrc|/etc/shadow|\.docker/config\.json|\.kube/config|\.git-credentials|\.pgpass)")
SQL = re.compile(r"^\s*(with\s+(recursive\s+)?\w+\s*(\([^)]*\)\s*)?as\s*\(|select\s.+\sfrom\s|insert\s+into\s|update\s+\S+\s+set\s|delete\s+from\s|drop\s+table\s|create\s+table\s|alter\s+table\s|replace\s+into\s)", re.I | re.S)
# A query built but not (seen) run counts when it reads as SQL, not as a message ("Select a
# file from {folder}", "select * from {t} returned rows"): its statement's keyword is upper
# case (SELECT, INSERT), or it has a clause only SQL has (WHERE a = , VALUES (, SET a = ).
SQL_CLAUSE = re.compile(r"\bwhere\s+[\w.]+\s*(=|<|>|!=|\bin\b|\blike\b|\bis\b)|\bvalues\s*\(|\bset\s+[\w.]+\s*=", re.I)
# Shells, matched on the program's base name (/bin/sh, /usr/bin/bash, zsh, cmd.exe).
SHELL_BINARIES = re.compile(r"^(ba|z|da|k|a|c|tc|fi|mk|yash|posh)?sh$|^busybox$|^cmd(\.exe)?$|^(powershell|pwsh)(\.exe)?$", re.I)
# Programs that run the command after their own options and VAR=value words (env sh -c).
COMMAND_WRAPPERS = {"env", "sudo", "doas", "nohup", "nice", "ionice", "setsid", "stdbuf", "timeout", "chroot",
                    "unshare", "nsenter", "runuser", "su", "exec", "command", "builtin", "xargs", "time"}


def base_name(s):
    return s.replace("\\", "/").rsplit("/", 1)[-1]


def shell_c(argv):
    """Where a shell runs a command line in an argv: the index of the command after a
    shell's -c (-c, -lc, -ec, /c for cmd, -Command for PowerShell), or None. argv holds
    the literal words (None for others); the shell must be the program, after any
    wrappers (env, sudo, timeout 5) and what the call passes before it (os.execl's path,
    os.spawnl's mode)."""
    for j, w in enumerate(argv):
        if w is None:
            continue
        b = base_name(w.split()[0] if w.split() else w)
        if SHELL_BINARIES.search(b):
            for k in range(j + 1, len(argv)):
                o = argv[k]
                if o is None or not o.startswith(("-", "/", "+")):
                    break
                if re.match(r"^(-[a-zA-Z]*c[a-zA-Z]*|/[cCkK]|-command|-c(ommand)?)$", o, re.I) and not o.startswith("--"):
                    return k + 1
            continue  # the path before argv[0] (os.execl("/bin/sh", "sh", "-c", ...))
        if b in COMMAND_WRAPPERS or w.startswith("-") or "=" in w or w.isdigit():
            continue
        return None
    return None
REVERSE_SHELL_STRINGS = re.compile(r"(/dev/tcp/|/dev/udp/|\bnc\s+(-\w+\s+)*-e\b|\bncat\b.*\s-e\b|bash\s+-i\s*>&|mkfifo\s+/tmp/\S+;\s*(nc|cat)|socat\s+.*exec:)", re.I)
DESTRUCTIVE_STRINGS = re.compile(r"(\brm\s+-(rf|fr|r\s+-f|f\s+-r)\s+(/|~|/\*|\$HOME)(\s|$|['\"])|\bmkfs(\.\w+)?\s+/dev/|\bdd\s+if=/dev/(zero|random|urandom)\s+of=/dev/[sh]d|(?<![\w:.])(?P<bomb>[\w:.]+)\s*\(\)\s*\{\s*(?P=bomb)\s*\|\s*(?P=bomb)\s*&\s*;?\s*\}\s*;\s*(?P=bomb)(?![\w:.])|\bfork\s+while\s+fork\b|\bchmod\s+-R\s+777\s+/(\s|$))")
SENSITIVE_ROOTS = {"/", "/home", "/etc", "/usr", "/var", "/root", "~"}
# More reverse shells: nc/ncat/netcat told to run a program (-e, -c, --exec, --sh-exec)
# with the host and port anywhere before, and a Python one-liner's socket handed over.
MORE_REVERSE_SHELL = re.compile(r"\b(nc|ncat|netcat)(\.\w+)?\s[^;|&\n]*?(?<!\S)(-\w*[ec]|--(sh-|lua-)?exec)(?=[\s=]|$)"
                                r"|\bsocket\b.*\bconnect\b.*\b(dup2|pty\.spawn)\b", re.I | re.S)
# What rm may not delete recursively: the trees of SENSITIVE_ROOTS, by any spelling of the
# home directory, and all their entries (/*).
HOME_WORDS = ("~", "$HOME", "${HOME}")


def sensitive_root(path):
    p = path.strip("'\"")
    for h in HOME_WORDS:
        if p == h or p.startswith(h + "/"):
            p = "~" + p[len(h):]
    while p.endswith(("/*", "/")) and p not in ("/",):
        p = p[:-2] if p.endswith("/*") else p[:-1]
    return p in SENSITIVE_ROOTS or p == ""


def destructive_rm(words):
    """Whether an rm command's words (after the program) delete a SENSITIVE_ROOTS tree
    recursively: -r/-R/--recursive in any spelling (-Rf, -r -f, --no-preserve-root
    beside), and one such tree among the paths (rm -rf /tmp/x /)."""
    recursive, paths = False, []
    for w in words:
        if w == "--":
            continue
        if w.startswith("--"):
            recursive = recursive or w == "--recursive"
        elif w.startswith("-") and len(w) > 1:
            recursive = recursive or "r" in w or "R" in w
        else:
            paths.append(w)
    return recursive and any(sensitive_root(p) for p in paths)


def destructive_command(text):
    """Whether a command line holds such an rm, in any of its commands (split at ;, &,
    | and newlines), after sudo and the like; the program's name in any case."""
    for cmd in re.split(r"[;&|\n]+|\$\(", text):
        words = cmd.split()
        while words and (base_name(words[0]).lower() in COMMAND_WRAPPERS or "=" in words[0]):
            words = words[1:]
        if len(words) > 1 and base_name(words[0]).lower() == "rm" and destructive_rm(words[1:]):
            return True
    return False
# Persistence: files that make code run again later — at a login or a shell's start, on
# a schedule, at boot, at every Python start — or let someone in: shell start-up files,
# authorized_keys, cron, systemd units, init scripts, autostart entries, sudoers, the
# dynamic loader's preload list, .pth files and sitecustomize. Matched against a path's
# literal parts joined with "/" (Path.home() / ".ssh" / "authorized_keys" is
# ".ssh/authorized_keys").
PERSIST_PATHS = re.compile(
    r"(^|/)\.(bashrc|bash_profile|bash_login|bash_logout|profile|zshrc|zprofile|zshenv|zlogin|kshrc|cshrc|tcshrc"
    r"|config/fish/config\.fish)$|(^|/)\.ssh/authorized_keys2?$|^/etc/(cron\.(d|hourly|daily|weekly|monthly)/.+"
    r"|crontab|anacrontab|rc\.local|profile|bash\.bashrc|zsh/zshrc|environment|ld\.so\.preload|sudoers)$"
    r"|^/etc/(init\.d|profile\.d|sudoers\.d|rc\d\.d)/.+|^/var/spool/cron/.+|(^|/)systemd/(system|user)/[^/]+\.(service|timer|socket|path)$"
    r"|(^|/)\.config/autostart/[^/]+\.desktop$|(^|/)(site|dist)-packages/[^/]+\.pth$|(^|/)(sitecustomize|usercustomize)\.py$")
# The same written by a shell command: a redirection or tee into such a file, a crontab
# installed from a file or stdin (crontab -l, -e, -r only list, edit, remove).
PERSIST_TARGET = (r"(~|\$HOME|\$\{HOME\}|/root|/home/[^/\s]+)/\.(bashrc|bash_profile|bash_login|profile|zshrc|zprofile"
                  r"|ssh/authorized_keys2?)|/etc/(cron\.(d|hourly|daily|weekly|monthly)/\S+|crontab|rc\.local|profile(\.d/\S+)?"
                  r"|bash\.bashrc|ld\.so\.preload|sudoers(\.d/\S+)?)|/etc/systemd/system/\S+\.(service|timer)"
                  r"|/var/spool/cron/\S+")
PERSIST_COMMANDS = re.compile(r"(>>?|\btee\s+(-a\s+|--append\s+)?)\s*['\"]?(" + PERSIST_TARGET + r")(?=['\"\s;|&)]|$)"
                              r"|\bcrontab(\s+-u\s+\S+)?\s+(-(?=\s|$)|[^-\s]\S*)")
# Piping a download into a shell or an interpreter: curl ... | sh, wget -O- ... | sudo
# bash, sh -c "$(curl ...)", bash <(curl ...), python3 <(wget -qO- ...).
DOWNLOAD_RUN = re.compile(
    r"\b(curl|wget|fetch)\b[^|;&\n]*\|\s*(sudo\s+(-\S+\s+)*)?(env\s+)?(\S*/)?(ba|z|da|k|a)?sh\b"
    r"|\b(curl|wget|fetch)\b[^|;&\n]*\|\s*(sudo\s+)?(\S*/)?(python[\d.]*|perl|ruby|node|php)\b"
    r"|\b((ba|z|da|k)?sh|python[\d.]*)\s+(-c\s+)?['\"]?(<\(|\$\()\s*(curl|wget)\b")
# Calls that fetch from the network (what a download-and-run runs).
FETCH_CALLS = {"urllib.request.urlopen", "urllib.request.urlretrieve", "urllib2.urlopen", "urllib.urlretrieve",
               "requests.get", "requests.post", "requests.request", "httpx.get", "httpx.stream", "wget.download",
               "urllib3.request", "aiohttp.request"}
FETCH_METHODS = {"get", "request", "urlopen", "stream"}
# Interpreters that run a file they are given: a downloaded script passed to one is run.
INTERPRETERS = re.compile(r"^((ba|z|da|k|a)?sh|python[\d.]*|perl|ruby|node|php|pwsh|powershell)$")
# Deleting or overwriting calls that, in a loop over a whole system tree, wipe it.
WIPE_CALLS = {"os.remove", "os.unlink", "os.rmdir", "shutil.rmtree", "os.truncate", "os.removedirs"}
TREE_WALKS = {"os.walk", "os.fwalk", "os.scandir", "os.listdir", "glob.glob", "glob.iglob"}
# Introspection that leads out of a restricted namespace: object's subclasses reached
# from a literal's class ().__class__.__base__.__subclasses__(), and a function's globals
# or a module's builtins reached by attribute (f.__init__.__globals__["os"]).
CLASS_WALK = {"__class__", "__base__", "__bases__", "__mro__", "mro"}
GLOBALS_ATTRS = {"__globals__", "__builtins__", "func_globals", "f_globals", "f_builtins"}
# lxml's parsing functions, and parser options that resolve external entities or fetch.
LXML_PARSE = {"parse", "fromstring", "XML", "iterparse", "XMLID", "fromstringlist"}
LXML_UNSAFE_OPTIONS = {"resolve_entities": True, "load_dtd": True, "no_network": False, "dtd_validation": True,
                       "attribute_defaults": True}
TARFILE_OPEN = {"tarfile.open", "tarfile.TarFile", "tarfile.TarFile.open", "tarfile.TarFile.taropen",
                "tarfile.TarFile.gzopen", "tarfile.TarFile.bz2open", "tarfile.TarFile.xzopen"}
SAFE_TAR_FILTERS = {"data", "tar", "tarfile.data_filter", "tarfile.tar_filter"}
YAML_LOADS = {"yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load", "yaml.unsafe_load_all"}
UNVERIFIED_CONTEXTS = {"ssl._create_unverified_context", "ssl._create_stdlib_context"}
# Calls of aiohttp's that take ssl=False / verify_ssl=False to skip certificate checks
# (other libraries' ssl=False, as asyncio's or redis's, means no TLS at all).
AIOHTTP_METHODS = {"get", "post", "put", "patch", "delete", "head", "options", "request", "ws_connect", "_request"}
# Client objects whose methods send what they are given: conn = http.client.HTTPSConnection(h);
# conn.request("POST", "/", body=secret).
CONN_CTORS = {"http.client.HTTPConnection", "http.client.HTTPSConnection", "urllib3.PoolManager",
              "urllib3.ProxyManager", "urllib3.HTTPConnectionPool", "urllib3.HTTPSConnectionPool",
              "urllib3.connection_from_url", "requests.Session", "requests.session", "httpx.Client",
              "httpx.AsyncClient", "aiohttp.ClientSession"}
NUMPY_LOADS = {"numpy.load", "numpy.lib.format.read_array", "numpy.lib.npyio.load"}
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
    def __init__(self, size=0):
        self.aliases = {}        # local name -> qualified name
        self.folded = {}         # id of an expression -> what it folds to (see fold)
        self.folding = set()     # ids of the expressions being folded
        self.fold_depth = 0
        self.fold_spent = 0      # bytes the folds made
        self.fold_budget = max(FOLD_BUDGET_MIN, FOLD_BUDGET_PER_BYTE * size)
        self.findings = []
        self.tainted = set()     # names holding credentials
        self.taint_env = {}      # tainted name -> the environment variables it holds, None if others
        self.sockets = []        # calls of socket connect
        self.dup2 = []           # os.dup2 calls
        self.forks = []          # calls that fork or start a process (FORK_CALLS, SPAWN_CALLS)
        self.shell_spawn = []    # calls spawning a shell binary
        self.star_modules = []   # modules imported with "from m import *"
        self.defined = set()     # names bound in the code (def, class, assignment, argument)
        self.consts = {}         # name assigned once, to a constant -> the Constant node
        self.dicts = {}          # name assigned once, to a dict display or dict() -> the node
        self.once = {}           # name assigned once -> the value
        self.escaped = set()     # names of dicts read other than as params=, d[k] or compared
        self.sql_names = set()   # names assigned a query built from strings
        self.sql_sources = {}    # such a name -> the values it is assigned
        self.sql_done = set()    # ids of the parts of a query already reported where it is built
        self.sql_inner = set()   # ids of operands of a + or % checked with the whole (visit_BinOp)
        self.conns = {}          # name -> the CONN_CTORS call it is assigned
        self.marks = set()       # names assigned a list of parameter placeholders, "?, ?, ?"
        self.inert = set()       # ids of strings that are never run: docstrings, operands of ==, in
        self.splatted = set()    # ids of dict() calls passed as **kwargs (checked at the call)
        self.commands = []       # (check, node, message) of strings holding a dangerous command
        self.functions = set()   # names of the functions defined in the code
        self.tainted_attrs = set()  # attribute names assigned credentials (c.key = secret)
        self.defs = {}           # name of a function or lambda of the code's -> its parameter lists
        self.param_flows = []    # ((function name, position or keyword), env) of credentials passed to one
        self.returns_secret = set()  # names of the code's functions that return credentials
        self.secret_funcs = set()    # those known from an earlier pass (see analyze)
        self.func_stack = []     # names of the enclosing functions
        self.called = set()      # ids of the callees of calls, and of values a name is bound to
        self.opened = {}         # name bound to a call (assigned, or by with ... as) -> the call
        self.accepts = []        # .accept() calls: a listening socket's connections
        self.fetched = False     # whether the code fetches anything from the network
        self.downloads = {}      # key of a path a download is written to -> the call
        self.runs = []           # (key of a path a process or interpreter runs, call)
        self.escape_seen = set() # ids of attribute chains already judged (introspection)
        self.in_class = []       # for each enclosing class, function or lambda: whether a class

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
        """qualname_of, with os under its other names (posix, nt) named os."""
        q = self.qualname_of(node)
        if q is not None:
            root, dot, rest = q.partition(".")
            if root in OS_MODULES:
                q = "os" + dot + rest
            if q == "os.environb" or q.startswith("os.environb."):
                q = "os.environ" + q[len("os.environb"):]  # the same variables, as bytes
        return q

    def qualname_of(self, node):
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
                key = self.name_str(node.slice)
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
                    elif bq in ("globals()", "builtins.globals()", "vars()", "builtins.vars()") and key == "__builtins__":
                        parts.append("builtins")  # globals()["__builtins__"].eval
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
                attr = self.name_str(node.args[1])
                obj = self.qualname(node.args[0]) if attr is not None else None
                if obj is not None:
                    resolved = obj + "." + attr
            elif inner in IMPORT_CALLS and node.args:
                mod = self.name_str(node.args[0])
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
                    if key is not None and self.literal_str(key) == name:
                        return v
            elif isinstance(d, ast.Call) and self.qualname(d.func) in ("dict", "builtins.dict"):
                for kk in d.keywords:
                    if kk.arg == name:
                        return kk.value
        return None

    def literal_str(self, node):
        """The string node evaluates to when that is certain: see fold. None for anything
        else, and for an expression beyond the folding's bounds."""
        v = self.fold(node)
        return v if type(v) is str else None

    def name_str(self, node):
        """literal_str for a name the analysis resolves a callable or a module by
        (getattr's attribute, __import__'s module, a key of vars(os)): an expression
        beyond the folding's bounds is not passed over as unknown, it is a Limit."""
        v = self.fold(node)
        if v is OVER:
            raise Limit(OVER_MESSAGE)
        return v if type(v) is str else None

    def fold(self, node):
        """The str or bytes node certainly evaluates to, with constants folded: literals,
        names assigned once, + and * of them, %-format (%s only) and f-strings of them,
        str.format ({} fields only), str.join of a list or tuple of them (or map(chr, ...)),
        slicing and indexing ("metsys"[::-1]), upper/lower/strip/replace, chr(),
        bytes.fromhex(), base64 and binascii decoding, codecs.decode (rot13, hex, base64)
        and .decode()/.encode() in text encodings. None when it is not certain; OVER when
        the expression goes beyond FOLD_DEPTH or the analysis's FOLD_BUDGET (a result
        that may matter is then a Limit, never passed as clean)."""
        k = id(node)
        v = self.folded.get(k, MISSING)
        if v is not MISSING:
            return v
        if self.fold_depth >= FOLD_DEPTH:
            return OVER
        if k in self.folding:
            return None  # a name defined by itself: a = a + "x"
        self.folding.add(k)
        self.fold_depth += 1
        try:
            v = self.fold_node(node)
        finally:
            self.fold_depth -= 1
            self.folding.discard(k)
        if v is not OVER:
            if type(v) in (str, bytes) and type(node) is not ast.Constant and type(node) is not ast.Name:
                self.fold_spent += len(v)
                if self.fold_spent > self.fold_budget:
                    return OVER
            self.folded[k] = v
        return v

    def room(self, n):
        """Whether a fold may make a value of n more bytes within the budget."""
        return self.fold_spent + n <= self.fold_budget

    def fold_items(self, node):
        """The items of an iterable whose items fold: a list or tuple display (or a name
        assigned one once), a folded str or bytes (its characters), its split(),
        map(chr, ints), (chr(c) for c in ints) and reversed() of these; None when not
        certain, OVER."""
        t = type(node)
        if t is ast.Name and node.id in self.once and type(self.once[node.id]) in (ast.List, ast.Tuple):
            node, t = self.once[node.id], type(self.once[node.id])
        if t is ast.List or t is ast.Tuple:
            out = []
            for e in node.elts:
                v = self.fold(e)
                if v is None or v is OVER:
                    return v
                out.append(v)
            return out
        if t is ast.Call and not node.keywords:
            q = self.qualname(node.func)
            if q == "map" and len(node.args) == 2 and self.qualname(node.args[0]) == "chr":
                ints = self.int_items(node.args[1])
                return [chr(i) for i in ints] if type(ints) is list else ints
            if q == "reversed" and len(node.args) == 1:
                v = self.fold_items(node.args[0])
                return v[::-1] if type(v) is list else v
            if q in ("list", "tuple") and len(node.args) == 1:
                return self.fold_items(node.args[0])
            if q == "shlex.split" and len(node.args) == 1 or type(node.func) is ast.Attribute \
                    and node.func.attr == "split" and len(node.args) <= 1:
                # "rm -rf /".split(), shlex.split("rm -rf /") (as words split at spaces)
                s = self.fold(node.args[0] if q == "shlex.split" else node.func.value)
                sep = self.fold(node.args[0]) if q != "shlex.split" and node.args else None
                if type(s) is not str or (node.args and q != "shlex.split" and type(sep) is not str) or sep == "":
                    return s if s is OVER else None
                return s.split(sep)
        if (t is ast.GeneratorExp or t is ast.ListComp) and len(node.generators) == 1:
            g = node.generators[0]
            e = node.elt
            if not g.ifs and not g.is_async and type(g.target) is ast.Name and type(e) is ast.Call \
                    and len(e.args) == 1 and type(e.args[0]) is ast.Name and e.args[0].id == g.target.id \
                    and self.qualname(e.func) == "chr":
                ints = self.int_items(g.iter)
                return [chr(i) for i in ints] if type(ints) is list else ints
            return None
        v = self.fold(node)
        if type(v) is str:
            return list(v)
        if type(v) is bytes:
            return [bytes([b]) for b in v]
        return v if v is OVER else None

    def int_items(self, node):
        """The code points of a list or tuple display of integers (or a name assigned one
        once), each a valid character; None otherwise."""
        if type(node) is ast.Name and node.id in self.once:
            node = self.once[node.id]
        if type(node) not in (ast.List, ast.Tuple):
            return None
        if not self.room(len(node.elts)):
            return OVER
        out = []
        for e in node.elts:
            i = self.int_of(e)
            if i is None or not 0 <= i < 0x110000:
                return None
            out.append(i)
        return out

    def int_of(self, node):
        """int_value, with unary minus: a slice's bounds ("metsys"[::-1])."""
        if type(node) is ast.UnaryOp and type(node.op) is ast.USub:
            i = self.int_value(node.operand)
            return -i if i is not None else None
        return self.int_value(node)

    def fold_node(self, node):
        t = type(node)
        if t is ast.Constant:
            return node.value if type(node.value) in (str, bytes) else None
        if t is ast.Name:
            c = self.consts.get(node.id)
            if c is not None:
                return c.value if type(c.value) in (str, bytes) else None
            v = self.once.get(node.id)
            return self.fold(v) if v is not None else None
        if t is ast.JoinedStr:
            out = []
            for p in node.values:
                if type(p) is ast.Constant:
                    out.append(p.value)
                    continue
                if p.format_spec is not None or p.conversion not in (-1, 115, 114, 97):
                    return None
                v = self.fold(p.value)
                if v is None or v is OVER:
                    return v
                out.append(repr(v) if p.conversion == 114 else ascii(v) if p.conversion == 97 else str(v))
            return self.joined("", out)
        if t is ast.BinOp:
            op = type(node.op)
            if op is ast.Add:
                # A chain a + b + c + ... is folded at once, in linear time and without
                # a level of depth for each +.
                parts, todo = [], [node]
                while todo:
                    n = todo.pop()
                    if type(n) is ast.BinOp and type(n.op) is ast.Add:
                        todo += [n.right, n.left]
                        continue
                    v = self.fold(n)
                    if v is None or v is OVER:
                        return v
                    parts.append(v)
                return self.joined(parts[0][:0], parts)
            if op is ast.Mult:
                a, b = node.left, node.right
                v = self.fold(a)
                if v is None:
                    a, b = b, a
                    v = self.fold(a)
                if v is None or v is OVER:
                    return v
                n = self.int_value(b)
                if n is None:
                    return None
                return v * n if self.room(max(n, 0) * len(v)) else OVER
            if op is ast.Mod:
                fmt = self.fold(node.left)
                if fmt is None or fmt is OVER:
                    return fmt
                pct, pct_s = ("%", "%s") if type(fmt) is str else (b"%", b"%s")
                if pct in fmt.replace(pct + pct, fmt[:0]).replace(pct_s, fmt[:0]):
                    return None  # only %s and %%: no widths, which could make it large
                items = node.right.elts if type(node.right) is ast.Tuple else None
                args = []
                for e in items if items is not None else [node.right]:
                    v = self.fold(e)
                    if v is None or v is OVER:
                        return v
                    args.append(v)
                if not self.room(len(fmt) + sum(len(a) for a in args)):
                    return OVER
                try:
                    return fmt % (tuple(args) if items is not None else args[0])
                except (TypeError, ValueError):
                    return None
            return None
        if t is ast.Subscript:
            v = self.fold(node.value)
            if v is None or v is OVER:
                return v
            s = node.slice
            if type(s) is ast.Slice:
                bounds = []
                for b in (s.lower, s.upper, s.step):
                    i = self.int_of(b) if b is not None else None
                    if b is not None and i is None:
                        return None
                    bounds.append(i)
                if bounds[2] == 0:
                    return None
                return v[bounds[0]:bounds[1]:bounds[2]]
            i = self.int_of(s)
            if i is None or type(v) is not str or not -len(v) <= i < len(v):
                return None
            return v[i]
        if t is ast.Call:
            return self.fold_call(node)
        return None

    def joined(self, sep, parts):
        """sep.join(parts) when they are all of sep's type and within the budget."""
        if any(type(p) is not type(sep) for p in parts):
            return None
        if not self.room(sum(len(p) for p in parts) + len(sep) * max(len(parts) - 1, 0)):
            return OVER
        return sep.join(parts)

    def fold_args(self, node):
        """The folded positional and keyword arguments of a call, or None / OVER."""
        args, kwargs = [], {}
        for a in node.args:
            v = self.fold(a) if type(a) is not ast.Starred else None
            if v is None or v is OVER:
                return v
            args.append(v)
        for k in node.keywords:
            v = self.fold(k.value) if k.arg is not None else None
            if v is None or v is OVER:
                return v
            kwargs[k.arg] = v
        return args, kwargs

    def fold_call(self, node):
        f = node.func
        if type(f) is ast.Attribute and f.attr in FOLD_METHODS and not (type(f.value) is ast.Name and f.value.id in self.aliases):
            recv = self.fold(f.value)
            if recv is None or recv is OVER:
                return recv
            m = f.attr
            if m == "join":
                if len(node.args) != 1 or node.keywords:
                    return None
                items = self.fold_items(node.args[0])
                return items if items is None or items is OVER else self.joined(recv, items)
            if m == "format":
                if type(recv) is not str:
                    return None
                try:
                    fields = list(string.Formatter().parse(recv))
                except ValueError:
                    return None
                if any(fn is not None and (spec or conv not in (None, "s") or not (fn == "" or fn.isdigit() or fn.isidentifier()))
                       for _, fn, spec, conv in fields):
                    return None  # only {}, {0} and {name}: no widths, attributes or items
                fa = self.fold_args(node)
                if fa is None or fa is OVER:
                    return fa
                if not self.room(len(recv) + sum(len(a) for a in fa[0]) * len(fields) + sum(len(a) for a in fa[1].values()) * len(fields)):
                    return OVER
                try:
                    return recv.format(*fa[0], **fa[1])
                except (IndexError, KeyError, ValueError, TypeError):
                    return None
            fa = self.fold_args(node)
            if fa is None or fa is OVER:
                return fa
            args, kwargs = fa
            if m in ("decode", "encode"):
                want = bytes if m == "decode" else str
                enc = kwargs.get("encoding", args[0] if args else "utf-8")
                errors = kwargs.get("errors", args[1] if len(args) > 1 else "strict")
                if type(recv) is not want or type(enc) is not str or type(errors) is not str \
                        or enc.lower().replace("_", "-") not in TEXT_ENCODINGS or len(args) > 2:
                    return None
                try:
                    return getattr(recv, m)(enc, errors)
                except (UnicodeError, LookupError):
                    return None
            if m == "replace":
                if len(args) != 2 or kwargs or any(type(a) is not type(recv) for a in args):
                    return None
                grow = recv.count(args[0]) * max(len(args[1]) - len(args[0]), 0) if args[0] else (len(recv) + 1) * len(args[1])
                return recv.replace(*args) if self.room(len(recv) + grow) else OVER
            if kwargs or len(args) > 1 or any(type(a) is not type(recv) for a in args) or (args and m not in STRIP_METHODS):
                return None
            return getattr(recv, m)(*args)
        q = self.qualname(f) or ""
        if q in FOLD_DECODERS or q in ("codecs.decode", "codecs.encode"):
            fa = self.fold_args(node)
            if fa is None or fa is OVER:
                return fa
            args, kwargs = fa
            if not args or type(args[0]) not in (str, bytes):
                return None
            if not self.room(4 * len(args[0])):
                return OVER  # a85decode makes up to 4 bytes of each "z"
            try:
                if q.startswith("codecs."):
                    enc = kwargs.get("encoding", args[1] if len(args) > 1 else "utf-8")
                    if type(enc) is not str or enc.lower().replace("-", "_") not in CODECS:
                        return None  # not zlib_codec or bz2_codec: a decompression bomb
                    v = getattr(codecs, q[7:])(args[0], enc)
                    return v if type(v) in (str, bytes) else None
                if len(args) > 1 or kwargs:
                    return None  # altchars, validate: not worth following
                return bytes(FOLD_DECODERS[q](args[0]))
            except (ValueError, TypeError, UnicodeError, LookupError, binascii.Error):
                return None
        if q in ("chr", "builtins.chr") and len(node.args) == 1 and not node.keywords:
            i = self.int_of(node.args[0])
            return chr(i) if i is not None and 0 <= i < 0x110000 else None
        if q in ("str", "builtins.str") and len(node.args) == 1 and not node.keywords:
            v = self.fold(node.args[0])
            return v if type(v) is str or v is None or v is OVER else None
        if q in ("bytes", "builtins.bytes", "bytearray") and len(node.args) == 1 and not node.keywords:
            ints = self.int_items(node.args[0])
            if type(ints) is not list:
                return ints
            return bytes(ints) if all(i < 256 for i in ints) else None
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
        name assigned an integer once, or these combined with |, +, ^, &, -, * and (of
        small operands, so it stays quick) ** and <<."""
        if isinstance(node, ast.Constant):
            return node.value if type(node.value) is int else None
        if isinstance(node, ast.BinOp) and isinstance(node.op, INT_OPS):
            a = self.int_value(node.left)
            b = self.int_value(node.right) if a is not None else None
            if b is None:
                return None
            op = type(node.op)
            if op is ast.Pow or op is ast.LShift:
                if not 0 <= b <= 4096 or a.bit_length() > 64 or (op is ast.Pow and b > 256):
                    return None
                return a ** b if op is ast.Pow else a << b
            if op is ast.Mult and a.bit_length() + b.bit_length() > 1 << 16:
                return None
            return a | b if op is ast.BitOr else a + b if op is ast.Add else a ^ b if op is ast.BitXor \
                else a & b if op is ast.BitAnd else a - b if op is ast.Sub else a * b
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

    def reads_cred_file(self, node, depth=0):
        """Whether node names a credentials file: a literal, or literals joined as a path
        (Path.home() / ".aws" / "credentials"), through names assigned once."""
        parts = []
        for n in ast.walk(node):
            s = self.const_str(n)
            if s is not None:
                if CRED_PATHS.search(s):
                    return True
                parts.append((getattr(n, "lineno", 0), getattr(n, "col_offset", 0), s))
            elif isinstance(n, ast.Name) and n.id in self.once and depth < 4 and self.reads_cred_file(self.once[n.id], depth + 1):
                return True
        joined = "/".join(s.strip("/") for _, _, s in sorted(parts))
        return bool(parts) and bool(CRED_PATHS.search(joined))

    def carries_secret(self, node):
        """Whether evaluating node yields a credential: a tainted name, a secret-looking
        environment variable, the whole environment, or a credentials file's content."""
        if isinstance(node, ast.Name):
            return node.id in self.tainted or self.aliases.get(node.id) == "os.environ"
        if isinstance(node, ast.Subscript) and self.qualname(node.value) == "os.environ":
            return self.secretish_key(node.slice)
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in self.secret_funcs:
                return True  # a function of the code's that returns credentials
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
            return self.qualname(node) == "os.environ" or node.attr in self.tainted_attrs
        return any(self.carries_secret(c) for c in ast.iter_child_nodes(node))

    def secret_env(self, node):
        """The environment variables, named by literals, whose credentials node carries
        (as carries_secret finds them); None when it may carry others: the whole
        environment, a variable with a computed name, or a credentials file."""
        if isinstance(node, ast.Name):
            if node.id in self.tainted:
                return self.taint_env.get(node.id)
            return None if self.aliases.get(node.id) == "os.environ" else set()
        key, extra = None, set()
        if isinstance(node, ast.Subscript) and self.qualname(node.value) == "os.environ":
            key = node.slice
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in self.secret_funcs:
                return None
            q = self.qualname(node.func) or ""
            if q in ("os.getenv", "os.environ.get", "os.getenvb"):
                if not node.args:
                    return set()
                key = node.args[0]
                for d in node.args[1:] + [k.value for k in node.keywords]:
                    # The default: os.getenv("GITHUB_TOKEN", os.environ["AWS_SECRET_ACCESS_KEY"])
                    e = self.secret_env(d)
                    if e is None:
                        return None
                    extra |= e
            elif q in ("os.environ.copy", "os.environ.items", "os.environ.values") or \
                    (q.endswith((".read", ".read_text", ".readlines", ".read_bytes")) and self.reads_cred_file(node.func)):
                return None
        elif isinstance(node, ast.Attribute) and self.qualname(node) == "os.environ":
            return None
        if key is not None:
            k = self.const_str(key)
            return None if k is None else ({k} if SECRET_ENV.search(k) else set()) | extra
        out = set()
        for c in ast.iter_child_nodes(node):
            e = self.secret_env(c)
            if e is None:
                return None
            out |= e
        return out

    def url_pieces(self, node, depth=0):
        """The pieces of a URL expression in order: the text of its literal parts, and the
        nodes of the others. An f-string, a + of pieces and a name assigned once are
        opened: f"https://api.telegram.org/bot{TOKEN}/sendMessage" is the text
        "https://api.telegram.org/bot", the node TOKEN and the text "/sendMessage"."""
        s = self.literal_str(node)
        if s is not None:
            return [s]
        if depth < 8:
            if isinstance(node, ast.JoinedStr):
                out = []
                for v in node.values:
                    if not isinstance(v, ast.FormattedValue):
                        out += self.url_pieces(v, depth + 1)
                    elif v.conversion == -1 and v.format_spec is None:
                        out += self.url_pieces(v.value, depth + 1)
                    else:
                        out.append(v.value)
                return out
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
                return self.url_pieces(node.left, depth + 1) + self.url_pieces(node.right, depth + 1)
            if isinstance(node, ast.Name) and node.id in self.once:
                return self.url_pieces(self.once[node.id], depth + 1)
        return [node]

    @staticmethod
    def url_host(pieces):
        """The host of an https URL whose scheme and host are literal, else None:
        "https://api.github.com/...", f"https://api.github.com/repos/{repo}", or BASE + "/x"
        with BASE assigned such a literal once. A host with user info (a@b) or a
        backslash is no host: what a client makes of it varies."""
        text = ""
        for p in pieces:
            if not isinstance(p, str):
                break
            text += p
        whole = all(isinstance(p, str) for p in pieces)
        m = re.match(r"https://([^/?#]+)" + ("([/?#]|$)" if whole else "[/?#]"), text)
        if not m or "@" in m.group(1) or "\\" in m.group(1):
            return None
        return m.group(1).split(":")[0].lower().rstrip(".")

    @staticmethod
    def credential_param(name):
        """Whether a query parameter's name says it carries a credential (key=, token=,
        access_token=, api_key=), as against a message or data (text=, q=)."""
        return secret_name(name) or name.lower() == "key"

    def url_secret_env(self, pieces):
        """The environment variables whose credentials the URL carries, each in its path or
        as a credential parameter of its query; None when one sits elsewhere (a query
        parameter holding data, the fragment) or carries credentials of unknown name."""
        env, text = set(), ""
        for p in pieces:
            if isinstance(p, str):
                text += p
                continue
            if self.carries_secret(p):
                e = self.secret_env(p)
                rest = text.split("://", 1)[-1]
                if e is None or "/" not in rest or "#" in rest:
                    return None
                if "?" in rest:
                    m = re.search(r"[?&]([^=&?#]+)=$", rest)
                    if not m or not self.credential_param(m.group(1)):
                        return None
                env |= e
            text += "\x00"
        return env

    def params_secret_env(self, node):
        """The environment variables whose credentials a params= dict carries, each as a
        credential parameter (key=, token=); None when one is passed as another parameter
        (text=) or the dict is not written out."""
        d = node
        if isinstance(node, ast.Name):
            if node.id in self.escaped:
                return None  # p.update(text=secret), q = p; q["text"] = secret: not known
            d = self.dicts.get(node.id)
        if not isinstance(d, ast.Dict):
            return None
        env = set()
        for k, v in zip(d.keys, d.values):
            if not self.carries_secret(v):
                continue
            ks = self.const_str(k) if k is not None else None
            e = self.secret_env(v)
            if ks is None or not self.credential_param(ks) or e is None:
                return None
            env |= e
        if isinstance(node, ast.Name) and node.id in self.tainted:
            # Items set later (params["text"] = secret) taint the name with their variables.
            held = self.taint_env.get(node.id)
            if held is None or not held <= env:
                return None
        return env

    @staticmethod
    def service_host(var, host):
        """Whether host is a service the environment variable var is named for: by
        SERVICE_HOSTS, or by the variable's first word naming a .com or .ai domain."""
        var = var.upper()
        labels = host.split(".")
        if len(labels) >= 2 and labels[-1] in ("com", "ai") and var.split("_")[0].lower() == labels[-2]:
            return True
        for stem, hosts in SERVICE_HOSTS:
            if var == stem or var.startswith(stem + "_"):
                for h in hosts:
                    if host == h or (h.startswith("*.") and host.endswith(h[1:])):
                        return True
        return False

    def route(self, node, conn=None):
        """How a request sends the credentials it carries, as a Route: the environment
        variables (None when it may carry others: the whole environment, a variable with a
        computed name, a credentials file), where they go (as authentication: headers=,
        auth=, putheader; in the URL's path or as a credential parameter of its query, or
        params=; elsewhere: the body, a query parameter holding data) and the host.
        request("GET", url, ...) takes the method first. conn is the CONN_CTORS call whose
        object the request is made on: for http.client the host is the connection's, the
        URL a path, and headers the fourth argument; putheader(name, value) sends a header.
        A urllib Request made with the credentials is judged where it is made: urlopen of it
        sends only what else urlopen is given."""
        r = Route()
        args = list(node.args)
        attr = node.func.attr if isinstance(node.func, ast.Attribute) else None
        if attr == "request" and args and re.match(r"^[A-Za-z]+$", self.literal_str(args[0]) or "-"):
            args = args[1:]  # the method
        cq = self.qualname(conn.func) if conn is not None else None
        http_client = cq in ("http.client.HTTPConnection", "http.client.HTTPSConnection")
        headers_arg = None
        url = None
        if http_client and attr == "putheader":
            headers_arg = args[1:]
            args = []
        else:
            url = self.kwarg(node, "url")
            if url is None:
                url = self.kwarg(node, "base_url")  # httpx.Client(base_url=..., headers=...)
            if url is None and args:
                url = args[0]
            if http_client and len(args) >= 3:
                headers_arg = [args[2]]  # request(method, url, body, headers), the method dropped
                args = args[:2]
            if any(self.carries_secret(a) for a in args[1:]):
                r.add(self.secret_env_of(args[1:]), "body")
            made = self.once.get(url.id) if isinstance(url, ast.Name) else url
            if isinstance(made, ast.Call) and self.qualname(made.func) in URLLIB_REQUESTS:
                # urlopen(Request(url, headers=...)): the Request was judged where it was
                # made; its URL says where the rest goes.
                url = made.args[0] if made.args else self.kwarg(made, "url")
                r.judged = True
        for h in headers_arg or []:
            if self.carries_secret(h):
                r.add(self.secret_env(h), "auth")
        for k in node.keywords:
            if k.value is url or not self.carries_secret(k.value):
                continue
            if k.arg in ("headers", "auth"):
                r.add(self.secret_env(k.value), "auth")
            elif k.arg == "params":
                e = self.params_secret_env(k.value)
                if e is not None:
                    r.add(e, "url")
                else:
                    r.add(self.secret_env(k.value), "body")
            else:
                r.add(self.secret_env(k.value), "body")
        if http_client:
            # The URL is the connection's host and the request's path, over TLS only.
            h = self.kwarg(conn, "host")
            h = h if h is not None else conn.args[0] if conn.args else None
            hs = self.literal_str(h) if h is not None else None
            if not hs or not re.match(r"^[\w.-]+(:\d+)?$", hs):
                return r
            r.host = hs.split(":")[0].lower().rstrip(".")
            r.scheme = "https" if cq == "http.client.HTTPSConnection" else "http"
            path = self.url_pieces(url) if url is not None else []
            if path and not (isinstance(path[0], str) and path[0].startswith("/")):
                r.host = r.scheme = None
                return r
            pieces = ["https://" + hs] + path
            r.path = path[0] if path else ""
        elif url is not None:
            pieces = self.url_pieces(url)
            r.scheme, r.host, r.path = self.literal_host(pieces)
        else:
            return r
        if not r.judged and any(not isinstance(p, str) and self.carries_secret(p) for p in pieces):
            e = self.url_secret_env(pieces) if r.scheme == "https" and self.url_host(pieces) else None
            if e is not None:
                r.add(e, "url")
            else:
                r.add(self.secret_env_of(p for p in pieces if not isinstance(p, str)), "body")
        return r

    def secret_env_of(self, nodes):
        """secret_env of several nodes together: None when any may carry others."""
        env = set()
        for n in nodes:
            if self.carries_secret(n):
                e = self.secret_env(n)
                if e is None:
                    return None
                env |= e
        return env

    @staticmethod
    def literal_host(pieces):
        """The scheme, host and the literal text after it of a URL whose scheme and host
        are literal (as url_host, over http too), else (None, None, "")."""
        text = ""
        for p in pieces:
            if not isinstance(p, str):
                break
            text += p
        whole = all(isinstance(p, str) for p in pieces)
        m = re.match(r"(https?)://([^/?#]+)" + ("([/?#]|$)" if whole else "[/?#]"), text, re.I)
        if not m or "@" in m.group(2) or "\\" in m.group(2):
            return None, None, ""
        host = m.group(2).lower()
        host = host if host.startswith("[") else host.split(":")[0]
        return m.group(1).lower(), host.rstrip("."), text[m.end(2):]

    def judge_sending(self, node, conn, what):
        """The finding for a request that carries credentials, or None: none when they go
        only as authentication over https to a literal host of the service the variables
        are named for (OPENAI_API_KEY to api.openai.com, TELEGRAM_BOT_TOKEN in
        https://api.telegram.org/bot{token}/..., JIRA_API_TOKEN as basic auth to
        x.atlassian.net); a note (credential-sent) when they go as authentication only
        (headers=, auth=) over https to another literal host, as any API client sends its
        key (GOOGLE_API_KEY to generativelanguage.googleapis.com, API_KEY to the company's
        own API); exfiltration otherwise: a credential in the body, or in the URL or query
        of a host it is not named for; a host computed at run time, plain http, a raw IP
        address, a service that captures requests, holds pastes or tunnels to anyone's
        machine (EXFIL_HOSTS), a host that imitates the variable's service
        (api.openai.com.evil.example); the whole environment, a credentials file, more than
        MAX_SENT_CREDENTIALS variables, or a key that only signs and is never sent
        (SIGNING_SECRETS)."""
        r = self.route(node, conn)
        if r.judged and not r.places:
            return None
        env, host = r.env, r.host
        what_env = ", ".join(sorted(env)) if env else "credentials"
        if env is None:
            what_env = "the whole environment, a credentials file or a credential named at run time"
        else:
            what_env += " from the environment"
        dest = host if host else "a host not written in the call"
        msg = "%s sends %s to %s" % (what, what_env, dest)
        own = bool(env) and host is not None and r.scheme == "https" and all(self.service_host(v, host) for v in env)
        if own and r.places <= {"auth", "url"}:
            return None
        why = None
        if env is None:
            why = "not one named credential: what it holds is unknown"
        elif host is None:
            why = "a destination chosen at run time"
        elif r.scheme != "https":
            why = "over plain http, readable on the way"
        elif re.match(r"^(\[.*\]|[0-9.]+|0x[0-9a-f.x]+)$", host):
            why = "a raw IP address, not a service's name"
        elif exfil_host(host, r.path):
            why = "a webhook, paste, file-drop, request-capture or tunnel service, where anyone may read what it is sent"
        elif len(env) > MAX_SENT_CREDENTIALS:
            why = "%d credentials at once" % len(env)
        elif any(SIGNING_SECRETS.search(v) for v in env):
            why = "a key that signs requests or decrypts, never sent as itself"
        elif r.places - {"auth"}:
            why = "in the request's %s, not as its authentication, to a host the variable is not named for" % (
                "body" if "body" in r.places else "URL")
        else:
            twin = next((d for v in env for d in service_domains(v) if d in host and not self.service_host(v, host)), None)
            if twin:
                why = "a host that imitates %s, the variable's service" % twin
        if why:
            return "exfiltration", "%s: %s" % (msg, why)
        return "credential-sent", "%s as authentication (in headers or auth, over https), as API clients send their keys;" \
            " the rule does not know %s as the service of %s" % (msg, host, what_env.replace(" from the environment", ""))

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
        if all(isinstance(t, ast.Name) for t in node.targets) and not (self.in_class and self.in_class[-1]):
            # f = os.system: followed as an alias of the name (reported where f is called or
            # used); in a class body it is a method, E.run, which is not.
            self.called.add(id(node.value))
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
        # session.verify = False: every request of a requests or httpx session skips the checks.
        if self.is_false(value) and any(isinstance(t, ast.Attribute) and t.attr == "verify" and self.is_http_client(t.value)
                                        for t in targets):
            self.add("B501", value, "verify = False: TLS certificates are not checked")
        if isinstance(value, ast.Call) and self.qualname(value.func) in CONN_CTORS:
            for t in targets:
                if isinstance(t, ast.Name):
                    self.conns[t.id] = value
        if isinstance(value, ast.Call):
            for t in targets:
                if isinstance(t, ast.Name):
                    self.opened[t.id] = value
        if self.carries_secret(value):
            self.taint(targets, value)

    def taint(self, targets, value):
        """Marks what targets bind as holding the credentials value carries: names (of
        containers too, d[k] = v), and attribute names (c.key = v)."""
        if True:
            for t in targets:
                if isinstance(t, ast.Attribute):
                    self.tainted_attrs.add(t.attr)
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        env = self.secret_env(value)
                        if n.id in self.tainted:
                            old = self.taint_env.get(n.id)
                            env = None if env is None or old is None else env | old
                        self.tainted.add(n.id)
                        self.taint_env[n.id] = env

    def visit_AugAssign(self, node):
        # body += secret
        if self.carries_secret(node.value):
            self.taint([node.target], node.value)
        self.generic_visit(node)

    def visit_For(self, node):
        # for k, v in os.environ.items(): the loop's names hold the credentials.
        if self.carries_secret(node.iter):
            self.taint([node.target], node.iter)
        self.check_wipe(node.iter, node.body, node)
        self.generic_visit(node)

    def visit_comprehension_owner(self, node):
        # [os.remove(f) for r, _, fs in os.walk("/") for f in fs]
        for g in node.generators:
            self.check_wipe(g.iter, [node.elt] if hasattr(node, "elt") else [node.key, node.value], node)
        self.generic_visit(node)

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = visit_comprehension_owner

    def check_wipe(self, it, body, node):
        """A loop over a whole system tree or the home directory (os.walk("/"),
        glob.glob("/**", recursive=True), Path.home().rglob("*")) that deletes or
        overwrites what it finds wipes it."""
        if not isinstance(it, ast.Call):
            return
        q = self.qualname(it.func) or ""
        if q in TREE_WALKS or q.startswith("os.walk"):
            root = it.args[0] if it.args else self.kwarg(it, "top") or self.kwarg(it, "pathname") or self.kwarg(it, "path")
        elif isinstance(it.func, ast.Attribute) and it.func.attr in ("rglob", "glob", "walk", "iterdir"):
            root = it.func.value
        else:
            return
        if root is None:
            return
        text = self.command_str(root)
        if not (self.sensitive_path(root) or (text is not None and sensitive_root(text.split("*")[0]))):
            return
        for stmt in body:
            for n in ast.walk(stmt):
                if not isinstance(n, ast.Call):
                    continue
                cq = self.qualname(n.func) or ""
                attr = n.func.attr if isinstance(n.func, ast.Attribute) else ""
                mode = self.open_mode(n)
                if cq in WIPE_CALLS or (attr in ("unlink", "rmdir") and not n.args) or (mode and mode != "r"):
                    self.add("destructive", node, "a loop over %s deletes or overwrites what it finds (%s): a wipe"
                             % (repr(text) if text is not None else "the home directory", cq or attr or "open for writing"))
                    return

    visit_AsyncFor = visit_For

    def visit_withitem(self, node):
        # with http.client.HTTPSConnection(h) as conn / async with aiohttp.ClientSession() as s
        v, t = node.context_expr, node.optional_vars
        if isinstance(v, ast.Call) and isinstance(t, ast.Name) and self.qualname(v.func) in CONN_CTORS:
            self.conns[t.id] = v
        if isinstance(v, ast.Call) and isinstance(t, ast.Name):
            self.opened[t.id] = v
        self.generic_visit(node)

    def visit_Compare(self, node):
        # password == "Sup3rSecret": a hard-coded secret checked against (B105, as Bandit).
        operands = [node.left] + node.comparators
        for i, op in enumerate(node.ops):
            if not isinstance(op, (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)):
                continue
            a, b = operands[i], operands[i + 1]
            for name_node, lit in ((a, b), (b, a)):
                name = self.target_name(name_node)
                s = self.const_str(lit)
                if name and secret_name(name) and secret_literal(s):
                    self.add("B105", lit, "hard-coded password or secret compared with %s" % name)
        self.generic_visit(node)

    def visit_Dict(self, node):
        # {"password": "Sup3rSecret"}: a hard-coded secret in a dict display (B105).
        for k, v in zip(node.keys, node.values):
            ks = self.const_str(k) if k is not None else None
            vs = self.const_str(v)
            if ks and secret_name(ks) and secret_literal(vs):
                self.add("B105", v, "hard-coded password or secret as the value of key %r" % ks)
            elif ks and secret_name(ks) and vs and AUTH_HEADER_VALUE.match(vs) \
                    and secret_literal(AUTH_HEADER_VALUE.match(vs).group(2)):
                self.add("B105", v, "hard-coded credential in the %r header" % ks)
        self.generic_visit(node)

    def target_name(self, node):
        """The name a value is known by: x, obj.x, d["x"]; None for anything else."""
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return node.attr
        if isinstance(node, ast.Subscript):
            return self.const_str(node.slice)
        return None

    def is_http_client(self, node):
        """Whether node is an HTTP client object: a name assigned one (requests.Session(),
        aiohttp.ClientSession(), httpx.Client(), ...), or an object named as one (session,
        self.http_session, client, http): not any object with a verify attribute (args.verify,
        self.verify) or any get() taking ssl=."""
        if isinstance(node, ast.Name) and node.id in self.conns:
            return True
        if isinstance(node, ast.Call):
            return self.qualname(node.func) in CONN_CTORS
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
        words = [w.lower() for w in NAME_WORDS.findall(name)]
        return any(w in ("session", "sess", "client", "http", "https", "requests", "httpx", "aiohttp") for w in words)

    def is_false(self, node):
        """Whether node is certainly False (the literal, or a name assigned it once): not
        None or 0, which some libraries read as "the default"."""
        if isinstance(node, ast.Name) and node.id in self.consts:
            node = self.consts[node.id]
        return isinstance(node, ast.Constant) and node.value is False

    def visit_BinOp(self, node):
        if isinstance(node.op, (ast.Add, ast.Mod, ast.Mult)) and id(node) not in self.sql_inner:
            self.check_joined(node)
        if id(node) not in self.sql_inner:
            self.check_sql_built(node)
            # The operands of a + or % chain are checked with the whole (its text starts
            # with theirs): checked again one by one, a long chain would take quadratic time.
            todo = [node.left, node.right]
            while todo:
                n = todo.pop()
                if isinstance(n, ast.BinOp):
                    self.sql_inner.add(id(n))
                    todo += [n.left, n.right]
                elif isinstance(n, ast.JoinedStr):
                    self.sql_inner.add(id(n))
        self.generic_visit(node)

    def visit_JoinedStr(self, node):
        if id(node) not in self.sql_inner:
            self.check_sql_built(node)
        self.check_joined(node)
        self.generic_visit(node)

    def check_sql_built(self, node):
        """A query built from strings is reported where it is built (as Bandit B608 does),
        whether or not it is run here: a + or % of strings, .format() or an f-string that
        reads as SQL (an upper-case statement keyword, or SQL_CLAUSE). Its parts are not
        reported again."""
        if id(node) in self.sql_done or not self.built_sql(node, strict=True):
            return
        self.add("B608", node, "SQL query built from strings: use parameters")
        self.sql_done.update(id(n) for n in ast.walk(node))

    def sql_origins(self, node, seen=None):
        """Where a query run by execute() was built: the value itself, or for a name the
        values it was assigned (q = f"..."; cur.execute(q) is reported at q = ...)."""
        if not isinstance(node, ast.Name):
            return [node]
        seen = seen if seen is not None else set()
        if node.id in seen:
            return []
        seen.add(node.id)
        out = []
        for v in self.sql_sources.get(node.id, []):
            if self.built_sql(v):
                out += self.sql_origins(v, seen)
        return out

    def visit_FunctionDef(self, node):
        self.in_class.append(False)
        self.func_stack.append(node.name)
        self.function_def(node)
        self.func_stack.pop()
        self.in_class.pop()

    def visit_Return(self, node):
        if node.value is not None and self.func_stack and self.carries_secret(node.value):
            self.returns_secret.add(self.func_stack[-1])
        self.generic_visit(node)

    def function_def(self, node):
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
            self.check_command(v, node)

    def check_command(self, v, node):
        """Notes a string (or the expression that makes it) holding a reverse-shell or a
        destructive command; reported in finish, unless it is only data (see DataFlow)."""
        if REVERSE_SHELL_STRINGS.search(v) or MORE_REVERSE_SHELL.search(v):
            self.commands.append(("reverse-shell", node, "string holds a reverse-shell command: %r" % v[:80]))
        if DESTRUCTIVE_STRINGS.search(v) or destructive_command(v):
            self.commands.append(("destructive", node, "string holds a destructive shell command: %r" % v[:80]))
        if DOWNLOAD_RUN.search(v):
            self.commands.append(("download-exec", node, "string pipes a download into a shell or an interpreter: %r" % v[:80]))
        m = PERSIST_COMMANDS.search(v)
        if m:
            self.commands.append(("persistence", node, "string holds a command that installs itself to run again"
                                  " (a shell start-up file, authorized_keys, cron, a systemd unit): %r" % v[:80]))

    def command_str(self, node):
        """The text a string expression certainly makes, for the command checks (fold);
        None otherwise."""
        v = self.fold(node)
        return v if type(v) is str else None

    def check_joined(self, node):
        """A command computed from constants (+, %, an f-string, str.join, slicing,
        decoding: see fold) is checked as the string it makes; the literals alone were
        checked one by one. One beyond the folding's bounds is noted as a Limit, raised
        in finish if the value may run."""
        if id(node) in self.inert:
            return
        v = self.fold(node)
        if v is OVER and type(node) is ast.BinOp and type(node.op) is ast.Mult:
            # A large buffer (b"\0" * (1 << 30)) holds nothing its piece, checked on its
            # own, does not; a few copies of it hold whatever the repetition does.
            for piece, times in ((node.left, node.right), (node.right, node.left)):
                p, n = self.fold(piece), self.int_value(times)
                if type(p) in (str, bytes) and n is not None and len(p) * 3 <= FOLD_BUDGET_MIN:
                    v = p * 3
                    break
        if v is OVER:
            self.commands.append(("limit", node, OVER_MESSAGE))
        elif type(v) is str:
            self.check_command(v, node)
        elif type(v) is bytes:
            self.check_command(v.decode("utf-8", "replace"), node)

    def visit_List(self, node):
        # An argv written out, ["rm", "-rf", "/"], ["nc", host, "4444", "-e", "/bin/sh"]:
        # its literal words joined are checked as a command line.
        if len(node.elts) >= 2:
            words = self.argv_words(node)
            if words and words[0] and not any(c.isspace() for c in words[0]):
                self.check_command(" ".join(w if w is not None else "HOST" for w in words), node)
        self.generic_visit(node)

    visit_Tuple = visit_List

    def sensitive_path(self, node, depth=0):
        """Whether a path expression is the home directory or a SENSITIVE_ROOTS tree:
        a literal, Path.home(), os.path.expanduser("~"), os.environ["HOME"] /
        os.getenv("HOME"), or those through Path(), str(), os.path.abspath/realpath/
        normpath and .expanduser()/.resolve()/.absolute()."""
        if depth > 8:
            return False
        s = self.command_str(node)
        if s is not None:
            return sensitive_root(s)
        if isinstance(node, ast.Name) and node.id in self.once:
            return self.sensitive_path(self.once[node.id], depth + 1)
        if isinstance(node, ast.Subscript) and self.qualname(node.value) == "os.environ":
            return self.literal_str(node.slice) == "HOME"
        if not isinstance(node, ast.Call):
            return False
        q = self.qualname(node.func) or ""
        if q in ("pathlib.Path.home", "pathlib.PosixPath.home", "Path.home"):
            return True
        if q in ("os.getenv", "os.environ.get") and node.args:
            return self.literal_str(node.args[0]) == "HOME"
        if q in ("os.path.expanduser", "os.path.expandvars", "os.path.abspath", "os.path.realpath", "os.path.normpath",
                 "pathlib.Path", "pathlib.PosixPath", "str", "os.fspath") and len(node.args) == 1:
            return self.sensitive_path(node.args[0], depth + 1)
        if isinstance(node.func, ast.Attribute) and node.func.attr in ("expanduser", "resolve", "absolute") \
                and not node.args:
            return self.sensitive_path(node.func.value, depth + 1)
        return False

    def visit_Subscript(self, node):
        if type(node.slice) is ast.Slice and type(node.ctx) is ast.Load:
            self.check_joined(node)  # "/ fr- mr"[::-1]
        self.generic_visit(node)

    def visit_ClassDef(self, node):
        self.in_class.append(True)
        self.generic_visit(node)
        self.in_class.pop()

    def visit_Lambda(self, node):
        self.in_class.append(False)
        self.generic_visit(node)
        self.in_class.pop()

    def check_value(self, node):
        """A checked callable used as a value, not called: reported by its call's check."""
        if id(node) in self.called:
            return
        q = self.qualname(node)
        check = VALUE_CHECKS.get(q)
        if check is not None:
            self.add(check, node, "%s used as a value: it may be called under another name" % q)

    def visit_Name(self, node):
        if type(node.ctx) is ast.Load:
            self.check_value(node)

    def visit_Attribute(self, node):
        if type(node.ctx) is ast.Load:
            self.check_value(node)
            if id(node) not in self.escape_seen and node.attr in GLOBALS_ATTRS | {"__subclasses__"}:
                self.escape_chain(node)
        self.generic_visit(node)

    def visit_Call(self, node):
        self.called.add(id(node.func))
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
                self.check_shell_argv(node, q, "B602")
        elif shell is not None and self.truthy(shell) is True and id(node) not in self.splatted:
            self.add("B604", node, "%s called with shell=True" % q)
        if q in SHELL_CALLS:
            self.add("B605", node, "%s starts a process through a shell" % q)
        if q in NOSHELL_CALLS:
            self.add("B606", node, "%s starts a process" % q)
            self.check_shell_binary(node, q)
            self.check_shell_argv(node, q, "B605")
        if isinstance(node.func, ast.Attribute) and self.is_libc(node.func.value):
            if node.func.attr in LIBC_SHELL:
                self.add("B605", node, "the C library's %s, through ctypes, starts a process through a shell" % node.func.attr)
            elif node.func.attr in LIBC_EXEC:
                self.add("B606", node, "the C library's %s, through ctypes, starts a process" % node.func.attr)
        if q in EXEC_CALLS:
            code = node.args[0] if node.args else self.kwarg(node, "stmt") or self.kwarg(node, "source") \
                or self.kwarg(node, "cmd") or self.kwarg(node, "statement")
            if code is not None and not isinstance(code, ast.Lambda) and not (
                    isinstance(code, ast.Name) and code.id in self.functions):
                self.check_code_run("B102", node, code, "%s runs a string of code, as exec() does" % q)
        if q in ("eval", "builtins.eval"):
            self.check_code_run("B307", node, node.args[0] if node.args else self.kwarg(node, "source"),
                                "eval() runs arbitrary code")
        if q in ("exec", "builtins.exec"):
            self.check_code_run("B102", node, node.args[0] if node.args else self.kwarg(node, "source"),
                                "exec() runs arbitrary code")
        if q in ("compile", "builtins.compile") and len(node.args) + len(node.keywords) >= 3:
            self.check_code_run("B102", node, node.args[0] if node.args else self.kwarg(node, "source"),
                                "compile() of code to run")
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
        if cert_reqs is not None:
            # urllib3 takes the name as a string too: cert_reqs="CERT_NONE" or "NONE".
            named = self.literal_str(cert_reqs) in ("CERT_NONE", "NONE")
            if named or self.qualname(cert_reqs) == "ssl.CERT_NONE":
                check = "B501" if named or q.split(".")[0] == "urllib3" else "B323"
                self.add(check, node, "%s with cert_reqs=%s: TLS certificates are not checked"
                         % (q, "%r" % self.literal_str(cert_reqs) if named else "ssl.CERT_NONE"))
        if q.split(".")[0] == "aiohttp" or (short in AIOHTTP_METHODS and isinstance(node.func, ast.Attribute)
                                            and self.is_http_client(node.func.value)):
            for kw in ("ssl", "verify_ssl"):
                v = self.kwarg(node, kw)
                if v is not None and self.is_false(v):
                    self.add("B501", node, "%s with %s=False: TLS certificates are not checked" % (q, kw))
                    break
        if q in NUMPY_LOADS:
            ap = self.kwarg(node, "allow_pickle")
            if ap is None and q == "numpy.load" and len(node.args) >= 3:
                ap = node.args[2]
            # As shell=: a value that is not certainly false counts as true.
            if ap is not None and self.truthy(ap) is not False:
                self.add("numpy-pickle", node, "%s with allow_pickle=True unpickles arbitrary objects, which can run code"
                         " (Bandit has no test for it)" % q)
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
                for n in self.sql_origins(node.args[0]) or [node.args[0]]:
                    if id(n) not in self.sql_done:
                        self.add("B608", n, "SQL query built from strings: use parameters")
                        self.sql_done.update(id(x) for x in ast.walk(n))
        if isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            self.check_sql_built(node)
        if isinstance(node.func, ast.Attribute) and node.func.attr in FOLD_METHODS or q in FOLD_DECODERS \
                or q in ("codecs.decode", "codecs.encode", "chr", "bytes", "str"):
            self.check_joined(node)
        # Dynamic imports.
        # A literal name is a static import, unless it is a module that runs processes or
        # code (__import__('os')), which is how such calls are hidden.
        if q in ("__import__", "builtins.__import__", "importlib.import_module", "importlib.__import__"):
            mod = self.literal_str(node.args[0]) if node.args else None
            if mod is None or mod.split(".")[0] in EVASIVE_IMPORTS:
                self.add("dynamic-import", node, "%s imports a module chosen at run time" % q)
        # Destructive file operations.
        if q in ("shutil.rmtree",) and (node.args or self.kwarg(node, "path") is not None):
            path = node.args[0] if node.args else self.kwarg(node, "path")
            if self.sensitive_path(path):
                text = self.command_str(path)
                self.add("destructive", node, "shutil.rmtree(%s) deletes a system tree or the home directory"
                         % (repr(text) if text is not None else "the home directory"))
        # Persistence: a write to a file that runs code again later or lets someone in.
        dst = self.written_path(node, q)
        if dst is not None:
            text = self.path_text(dst)
            if text is not None and PERSIST_PATHS.search(text):
                self.add("persistence", node, "%s writes %r, which makes code run again later (at a login, a shell's"
                         " start, on a schedule, at boot) or lets someone in" % (q or "." + short, text))
            if not (isinstance(node.func, ast.Attribute) and node.func.attr in ("symlink_to", "hardlink_to")):
                self.downloads.setdefault(self.path_key(dst), []).append(node)
        # Downloads and what is run: a file downloaded, then run (see finish).
        if q in ("urllib.request.urlretrieve", "urllib.urlretrieve", "wget.download"):
            self.fetched = True
            d = node.args[1] if len(node.args) > 1 else self.kwarg(node, "filename") or self.kwarg(node, "out")
            if d is not None:
                self.downloads.setdefault(self.path_key(d), []).append(node)
        elif self.fetches(node, q):
            self.fetched = True
        self.note_run(node, q, short)
        if q in ("exec", "builtins.exec", "eval", "builtins.eval") and node.args and self.fetched_in(node.args[0]):
            self.add("download-exec", node, "%s runs code fetched from the network" % q)
        # Archives extracted without a filter: a member named ../../x or /etc/x, or a link,
        # is written outside the target (tarfile; zipfile strips such names itself).
        if short in ("extractall", "extract") and isinstance(node.func, ast.Attribute) and self.is_tarfile(node.func.value):
            f = self.kwarg(node, "filter")
            fs = self.literal_str(f) if f is not None else None
            if f is None or not (fs in SAFE_TAR_FILTERS or self.qualname(f) in SAFE_TAR_FILTERS):
                self.add("B202", node, "tarfile %s without filter='data': a member's path (../, /, a link) can write"
                         " outside the target directory" % short)
        if q == "shutil.unpack_archive" and self.kwarg(node, "filter") is None:
            self.add("B202", node, "shutil.unpack_archive without filter='data': a tar member's path (../, /, a link)"
                     " can write outside the target directory")
        # lxml: external entities resolved (file:// is read even with no_network).
        if q.startswith("lxml.etree."):
            if short == "XMLParser" or short == "XSLT" or short == "XMLPullParser":
                bad = [k.arg for k in node.keywords if k.arg in LXML_UNSAFE_OPTIONS
                       and self.truthy(k.value) is LXML_UNSAFE_OPTIONS[k.arg]]
                if bad:
                    self.add("B320", node, "lxml %s with %s: XML external entities are resolved (XXE)"
                             % (short, ", ".join("%s=%s" % (b, LXML_UNSAFE_OPTIONS[b]) for b in bad)))
            elif short in LXML_PARSE and node.args and self.literal_str(node.args[0]) is None:
                parser = node.args[1] if len(node.args) > 1 else self.kwarg(node, "parser")
                if parser is None:
                    self.add("B320", node, "lxml.etree.%s of data that is not a literal with lxml's default parser,"
                             " which resolves external entities (XXE): use defusedxml or"
                             " XMLParser(resolve_entities=False)" % short)
        # paramiko trusting any host key.
        if short == "set_missing_host_key_policy" and node.args:
            pol = node.args[0]
            pq = self.qualname(pol.func if isinstance(pol, ast.Call) else pol) or ""
            if pq.rsplit(".", 1)[-1] in ("AutoAddPolicy", "WarningPolicy"):
                self.add("B507", node, "paramiko %s: the server's host key is not checked, so anyone in the middle"
                         " can pose as it" % pq.rsplit(".", 1)[-1])
        if short == "accept" and isinstance(node.func, ast.Attribute) and not node.args:
            self.accepts.append(node)
        # Reverse shells: a socket connected to a remote end with its descriptors given
        # to a shell.
        if q in ("socket.create_connection",) or (short == "connect" and self.socket_connect(node, q)):
            self.sockets.append(node)
        if q == "os.dup2":
            self.dup2.append(node)
        if q in FORK_CALLS or q in SPAWN_CALLS or q.startswith("multiprocessing.") and short in ("Process", "Pool"):
            self.forks.append((node, q in FORK_CALLS))
        # Credentials passed to a function or lambda of the code's (see analyze).
        if isinstance(node.func, ast.Name) and node.func.id in self.defs:
            for i, a in enumerate(node.args):
                if isinstance(a, ast.Starred):
                    break
                if self.carries_secret(a):
                    self.param_flows.append(((node.func.id, i), self.secret_env(a)))
            for k in node.keywords:
                if k.arg and self.carries_secret(k.value):
                    self.param_flows.append(((node.func.id, k.arg), self.secret_env(k.value)))
        # Credentials put in a container: l.append(secret), l.extend(...), s.add(...).
        if isinstance(node.func, ast.Attribute) and node.func.attr in ("append", "extend", "insert", "add", "update",
                                                                       "appendleft", "setdefault") \
                and isinstance(node.func.value, (ast.Name, ast.Attribute)) \
                and any(self.carries_secret(a) for a in list(node.args) + [k.value for k in node.keywords]):
            self.taint([node.func.value], node)
        # Credentials handed to a program that sends them: curl -d secret, wget, nc.
        if q.startswith("subprocess.") or q in NOSHELL_CALLS or q in SHELL_CALLS or q == "asyncio.create_subprocess_exec":
            argv = self.call_argv(node, q) or []
            text = " ".join(w for w in argv if w) + " " + " ".join(s for _, s in self.strings_in(node))
            if re.search(r"\b(curl|wget|nc|ncat|netcat|socat|scp|rsync|ftp|telnet|sendmail|mail|http)\b", text) \
                    and any(self.carries_secret(a) for a in list(node.args) + [k.value for k in node.keywords]):
                self.add("exfiltration", node, "%s hands credentials read from the environment or a credentials file to a program that sends them" % q)
        # Credentials sent over the network.
        conn = self.conns.get(node.func.value.id) if isinstance(node.func, ast.Attribute) \
            and isinstance(node.func.value, ast.Name) else None
        if conn is not None:
            what = "%s (%s)" % (q, self.qualname(conn.func))
        elif NETWORK_CALLS.search(q) and q not in ("os.environ.get", "dict.get") and not q.endswith("environ.get"):
            what = q
        else:
            what = None
        if what is not None and any(self.carries_secret(a) for a in list(node.args) + [k.value for k in node.keywords]):
            verdict = self.judge_sending(node, conn, what)
            if verdict is not None:
                self.add(verdict[0], node, verdict[1])
        self.generic_visit(node)

    def check_code_run(self, check, node, src, message):
        """Reports a call that runs or compiles code (exec, eval, compile, timeit...) unless
        the code is computed from constants (a literal, a name assigned one, compile() of
        one): what such code does is written in the program, and it is checked as the
        program is (constant_code_findings), reported only when it is itself flagged. A
        callable reached by a lookup (builtins.__dict__["ev" + "al"], getattr(builtins,
        "exec")) rather than by its name is hiding, whatever it runs: reported."""
        f = node.func
        if not (isinstance(f, ast.Name) or isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)):
            self.add(check, node, message + ", reached by a lookup that hides its name")
            return
        if isinstance(src, ast.Name) and isinstance(self.once.get(src.id), ast.Call):
            src = self.once[src.id]  # c = compile("...", "<s>", "exec"); exec(c)
        if isinstance(src, ast.Call) and self.qualname(src.func) in ("compile", "builtins.compile"):
            src = src.args[0] if src.args else self.kwarg(src, "source")
        v = self.fold(src) if src is not None else None
        if type(v) not in (str, bytes):
            self.add(check, node, message)
            return
        inner = constant_code_findings(v)
        if inner:
            self.add(check, node, "%s: the code, written in the program, is itself flagged: %s (its line %d)"
                     % (message, inner[0]["message"], inner[0]["line"]))

    def open_mode(self, call):
        """For open() and the like (builtins, io, codecs, os.open, a Path's open()):
        "w" when the call opens a file for writing or appending, "r" for reading,
        None when it is no such call."""
        q = self.qualname(call.func) or ""
        if q in ("open", "builtins.open", "io.open", "codecs.open"):
            mode = call.args[1] if len(call.args) > 1 else self.kwarg(call, "mode")
        elif q == "os.open":
            flags = call.args[1] if len(call.args) > 1 else self.kwarg(call, "flags")
            names = {n.attr for n in ast.walk(flags) if isinstance(n, ast.Attribute)} if flags is not None else set()
            return "w" if names & {"O_WRONLY", "O_RDWR", "O_APPEND", "O_CREAT", "O_TRUNC"} else "r"
        elif isinstance(call.func, ast.Attribute) and call.func.attr == "open" and q.split(".")[0] not in (
                "os", "tarfile", "zipfile", "gzip", "bz2", "lzma", "shelve", "dbm", "webbrowser", "wave", "sqlite3"):
            mode = call.args[0] if call.args else self.kwarg(call, "mode")  # Path(...).open("a")
        else:
            return None
        if mode is None:
            return "r"
        m = self.literal_str(mode)
        if m is None:
            return "w"  # a mode chosen at run time may write
        return "w" if set(m) & set("wax+") else "r"

    def path_text(self, node, depth=0):
        """A path expression's literal parts in order, joined with "/": through names
        assigned once, os.path.join, f-strings, + and / of Path objects, expanduser():
        Path.home() / ".ssh" / "authorized_keys" is ".ssh/authorized_keys"."""
        parts = []

        def walk(n, d):
            s = self.literal_str(n)
            if s is not None:
                parts.append(s)
                return
            if isinstance(n, ast.Name) and n.id in self.once and d < 6:
                walk(self.once[n.id], d + 1)
                return
            if isinstance(n, ast.Call):
                for a in n.args:
                    walk(a, d)
                if isinstance(n.func, ast.Attribute):
                    walk(n.func.value, d)  # Path("~/.bashrc").expanduser()
                return
            for c in ast.iter_child_nodes(n):
                walk(c, d)

        walk(node, depth)
        parts = [p for p in parts if p.strip("/")] or parts
        if not parts:
            return None
        lead = "/" if parts[0].startswith("/") else ""
        return lead + "/".join(p.strip("/") for p in parts if p.strip("/"))

    def path_key(self, node):
        """What identifies a path expression across calls: its string when it is one
        computed from constants, else the name (or a name assigned a string once), else
        the expression's structure."""
        s = self.literal_str(node)
        if s is not None:
            return "s:" + s
        if isinstance(node, ast.Name):
            v = self.once.get(node.id)
            s = self.literal_str(v) if v is not None else None
            return "s:" + s if s is not None else "n:" + node.id
        return "e:" + ast.dump(node, annotate_fields=False)

    def written_path(self, node, q):
        """The path a call writes to (a file opened for writing, Path.write_text(), a copy's
        or a move's destination, a link made), or None."""
        if self.open_mode(node) == "w":
            if isinstance(node.func, ast.Attribute) and node.func.attr == "open" and q != "io.open" and q != "codecs.open":
                return node.func.value
            return node.args[0] if node.args else self.kwarg(node, "file") or self.kwarg(node, "path")
        if isinstance(node.func, ast.Attribute) and node.func.attr in ("write_text", "write_bytes", "symlink_to",
                                                                         "hardlink_to"):
            return node.func.value
        if q in ("shutil.copy", "shutil.copy2", "shutil.copyfile", "shutil.move", "os.rename", "os.replace",
                 "os.symlink", "os.link"):
            return node.args[1] if len(node.args) > 1 else self.kwarg(node, "dst")
        return None

    def fetches(self, node, q):
        """Whether a call fetches from the network: requests/httpx get, urlopen, a
        session's or client's get()."""
        short = q.rsplit(".", 1)[-1]
        if q in FETCH_CALLS:
            return True
        return bool(NETWORK_CALLS.search(q)) and short in FETCH_METHODS and not q.endswith("environ.get") \
            and q not in ("dict.get", "os.environ.get")

    def fetched_in(self, node, depth=0):
        """Whether an expression holds what a network fetch returned (through names
        assigned once): requests.get(u).text, urlopen(u).read()."""
        for n in ast.walk(node):
            if isinstance(n, ast.Call) and self.fetches(n, self.qualname(n.func) or ""):
                return True
            if isinstance(n, ast.Name) and n.id in self.once and depth < 4 and self.once[n.id] is not node \
                    and self.fetched_in(self.once[n.id], depth + 1):
                return True
        return False

    def note_run(self, node, q, short):
        """Notes the file a process-starting call runs: its program, or the script given
        to an interpreter (["sh", path], [sys.executable, path]); exec(open(path).read())
        and runpy.run_path(path)."""
        prog = None
        if q.startswith("subprocess.") or q in NOSHELL_CALLS or q in SHELL_CALLS or q.startswith("asyncio.create_subprocess"):
            if q in SHELL_CALLS or q == "asyncio.create_subprocess_shell" or (
                    self.kwarg(node, "shell") is not None and self.truthy(self.kwarg(node, "shell")) is not False):
                cmd = node.args[0] if node.args else self.kwarg(node, "args") or self.kwarg(node, "command")
                words = (self.command_str(cmd) or "").split() if cmd is not None else []
                if words and INTERPRETERS.match(base_name(words[0])) and len(words) > 1:
                    words = [w for w in words[1:] if not w.startswith("-")] or words
                if words:
                    self.runs.append(("s:" + words[0], node))
                return
            if q == "asyncio.create_subprocess_exec" or short.startswith(("execl", "spawnl")):
                elts = list(node.args)
            elif short.startswith(("execv", "spawnv", "posix_spawn")):
                pos = 2 if short.startswith("spawnv") else 1
                argv = node.args[pos] if len(node.args) > pos else None
                if isinstance(argv, ast.Name) and argv.id in self.once:
                    argv = self.once[argv.id]
                elts = [node.args[pos - 1]] + (list(argv.elts[1:]) if isinstance(argv, (ast.List, ast.Tuple)) else []) \
                    if len(node.args) >= pos else []
            else:
                a = node.args[0] if node.args else self.kwarg(node, "args")
                if isinstance(a, ast.Name) and a.id in self.once and isinstance(self.once[a.id], (ast.List, ast.Tuple)):
                    a = self.once[a.id]
                elts = list(a.elts) if isinstance(a, (ast.List, ast.Tuple)) else [a] if a is not None else []
            elts = [e for e in elts if not isinstance(e, ast.Starred)]
            if not elts:
                return
            prog = elts[0]
            first = self.literal_str(prog)
            if (first and INTERPRETERS.match(base_name(first))) or self.qualname(prog) == "sys.executable":
                rest = [e for e in elts[1:] if not (self.literal_str(e) or "").startswith("-")]
                prog = rest[0] if rest else None
        elif q in ("exec", "builtins.exec") and node.args and isinstance(node.args[0], ast.Call) \
                and isinstance(node.args[0].func, ast.Attribute) and node.args[0].func.attr in ("read", "read_text"):
            inner = node.args[0].func.value
            if isinstance(inner, ast.Call) and self.qualname(inner.func) in ("open", "builtins.open", "io.open"):
                prog = inner.args[0] if inner.args else None
            else:
                prog = inner  # Path(p).read_text()
        elif q in ("runpy.run_path",) and node.args:
            prog = node.args[0]
        if prog is not None:
            self.runs.append((self.path_key(prog), node))

    def is_tarfile(self, node):
        """Whether an expression is a tar archive opened with tarfile (directly, or a name
        assigned one or bound by with ... as)."""
        if isinstance(node, ast.Name):
            node = self.opened.get(node.id, self.once.get(node.id))
        return isinstance(node, ast.Call) and (self.qualname(node.func) or "") in TARFILE_OPEN

    def escape_chain(self, node):
        """Judges an attribute chain that reaches __subclasses__, __globals__ or
        __builtins__: walking from a literal's or object's class to object's subclasses
        (().__class__.__base__.__subclasses__()), or from there to a function's globals or
        builtins, is a sandbox escape; a function's globals or a module's builtins reached
        by attribute otherwise (f.__globals__["os"]) is introspection that escapes do."""
        attrs, n = [], node
        while True:
            self.escape_seen.add(id(n))
            if isinstance(n, ast.Attribute):
                attrs.append(n.attr)
                n = n.value
            elif isinstance(n, ast.Subscript):
                n = n.value
            elif isinstance(n, ast.Call) and isinstance(n.func, (ast.Attribute, ast.Subscript)):
                n = n.func
            elif isinstance(n, ast.Call) and self.qualname(n.func) in ("getattr", "builtins.getattr") \
                    and len(n.args) >= 2 and self.literal_str(n.args[1]):
                attrs.append(self.literal_str(n.args[1]))
                n = n.args[0]
            elif isinstance(n, ast.Call) and self.qualname(n.func) in ("type", "builtins.type") and len(n.args) == 1:
                attrs.append("__class__")
                n = n.args[0]
            else:
                break
        literal_root = isinstance(n, (ast.Constant, ast.Tuple, ast.List, ast.Dict, ast.Set, ast.JoinedStr)) \
            or (isinstance(n, ast.Name) and self.qualname(n) in ("object", "builtins.object", "type", "builtins.type"))
        names = set(attrs)
        subclasses = "__subclasses__" in names
        if subclasses and (literal_root or names & CLASS_WALK):
            self.add("sandbox-escape", node, "%s walks from a class to object's subclasses, the first step of a sandbox"
                     " escape (to a class whose module holds os or builtins)" % ".".join(["…"] + attrs[::-1]))
        elif names & GLOBALS_ATTRS and (subclasses or "_module" in names or names & CLASS_WALK and literal_root):
            self.add("sandbox-escape", node, "%s reaches builtins or globals through object's classes: a sandbox escape"
                     % ".".join(["…"] + attrs[::-1]))
        elif names & GLOBALS_ATTRS:
            self.add("introspection", node, "%s reaches a function's globals or a module's builtins by attribute,"
                     " as sandbox escapes do" % ".".join(["…"] + attrs[::-1]))

    def is_libc(self, node):
        """Whether node is a shared library loaded with ctypes (ctypes.CDLL(...),
        ctypes.cdll.LoadLibrary(...), cdll.LoadLibrary(...), or a name assigned one)."""
        if isinstance(node, ast.Name) and node.id in self.once:
            node = self.once[node.id]
        q = self.qualname(node) or ""
        return q.split(".")[0] == "ctypes" and any(w in q for w in ("CDLL", "PyDLL", "LoadLibrary", "cdll.", "pydll."))

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
            first = self.literal_str(args.elts[0])
        elif args is not None:
            first = self.literal_str(args)
        if q == "pty.spawn" or (first and SHELL_BINARIES.search(base_name(first.split()[0]) if first.split() else "")):
            self.shell_spawn.append(node)

    def argv_words(self, node):
        """The words of an argv: a list or tuple display (or a name assigned one once),
        or a literal split() ("/bin/sh -c id".split()), each word a str or None when not
        literal; None when node is none of these."""
        if isinstance(node, ast.Name) and node.id in self.once:
            node = self.once[node.id]
        if isinstance(node, (ast.List, ast.Tuple)):
            out = []
            for e in node.elts:
                if isinstance(e, ast.Starred):
                    break
                out.append(self.literal_str(e))
            return out
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "split" \
                and not node.args and not node.keywords:
            s = self.literal_str(node.func.value)
            return s.split() if s is not None else None
        if isinstance(node, ast.Call) and self.qualname(node.func) == "shlex.split" and node.args:
            s = self.literal_str(node.args[0])
            return s.split() if s is not None else None
        return None

    def call_argv(self, node, q):
        """The argv a process-starting call runs, as argv_words, or None: subprocess's
        args, asyncio.create_subprocess_exec's arguments, os.exec*'s and os.spawn*'s
        (path then argv, or each argument)."""
        short = q.rsplit(".", 1)[-1]
        if q == "asyncio.create_subprocess_exec" or short.startswith(("execl", "spawnl")):
            return [self.literal_str(a) if not isinstance(a, ast.Starred) else None for a in node.args]
        if q.startswith("subprocess."):
            args = node.args[0] if node.args else self.kwarg(node, "args")
            return self.argv_words(args) if args is not None else None
        if short.startswith(("execv", "spawnv", "posix_spawn")):
            pos = 2 if short.startswith("spawnv") else 1
            path = node.args[pos - 1] if len(node.args) >= pos else None
            argv = node.args[pos] if len(node.args) > pos else self.kwarg(node, "argv") or self.kwarg(node, "args")
            words = self.argv_words(argv) if argv is not None else None
            if words is None:
                return None
            return [self.literal_str(path) if path is not None else None] + words
        return None

    def check_shell_argv(self, node, q, check):
        """A shell given a command line in its argv (["sh", "-c", cmd]) is shell=True by
        another name: reported as such, and a literal argv joined is checked as a command."""
        argv = self.call_argv(node, q)
        if not argv:
            return
        k = shell_c(argv)
        if k is not None:
            self.add(check, node, "%s runs a shell with -c: the command line is interpreted by a shell (shell=True by another name)" % q)

    def built_sql(self, node, strict=False):
        """A query made by concatenation, %-formatting, .format() or an f-string with a
        value that is not a literal (literals joined together are a fixed query). strict,
        for a string not seen run: the text must read as SQL whoever uses it (its statement
        keyword upper case, or SQL_CLAUSE)."""
        def is_sql(text):
            if not SQL.search(text):
                return False
            return not strict or text.split(None, 1)[0].isupper() or bool(SQL_CLAUSE.search(text))

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
                and is_sql(literal_text(node))
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
            return dynamic(node) and is_sql(literal_text(node))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            return any(dynamic(a) for a in list(node.args) + [k.value for k in node.keywords]) \
                and is_sql(literal_text(node.func.value))
        if strict:
            return False
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

    def finish(self, tree):
        if self.commands:
            flow = DataFlow(self, tree)
            done = set()  # one finding of a kind per line: a string, and the argv or + it is in
            for check, node, message in self.commands:
                if (check, node.lineno) not in done and flow.may_run(node):
                    if check == "limit":
                        raise Limit(message)
                    done.add((check, node.lineno))
                    self.add(check, node, message)
        if self.forks:
            self.check_forks(tree)
        if self.sockets and (self.dup2 or self.shell_spawn):
            target = (self.dup2 or self.shell_spawn)[0]
            self.add("reverse-shell", target, "a socket is connected out and its descriptors are handed to a shell (reverse shell)")
        elif self.accepts and self.dup2 and self.shell_spawn:
            self.add("reverse-shell", self.dup2[0], "a listening socket's connection is handed to a shell as its"
                     " input and output (bind shell)")
        if self.fetched:
            for key, run in self.runs:
                wrote = self.downloads.get(key)
                if wrote:
                    self.add("download-exec", run, "runs %s, a file written with what was downloaded (line %d):"
                             " download and run" % (repr(key[2:]) if key.startswith(("s:", "n:")) else "a file",
                                                    wrote[0].lineno))


    def check_forks(self, tree):
        """Fork bombs: a fork whose children go on forking without end, in a loop that
        never ends nor is left (while True: os.fork()), a loop of more than FORK_DOUBLINGS
        rounds, or a function that calls itself without a way out; and processes started
        in a loop that never ends, is left or waits (while True: Process(...).start())."""
        parent = {}
        for n in ast.walk(tree):
            for c in ast.iter_child_nodes(n):
                parent[c] = n
        exits = {d.name for d in ast.walk(tree) if isinstance(d, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and any(self.leaves(x) for x in own_nodes(d, loops=True, handlers=False))}
        for call, fork in self.forks:
            message = self.fork_bomb(call, fork, parent, exits)
            if message:
                self.add("destructive", call, message)

    def fork_bomb(self, call, fork, parent, exits):
        """Why a call that forks (fork) or starts a process is a fork bomb, or None."""
        what = self.qualname(call.func)
        n = call
        while n in parent:
            n, child = parent[n], n
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if self.recurses(n, parent, exits):
                    return "fork bomb: %s in %s(), which calls itself without a way out: each process it starts " \
                           "does the same" % (what, n.name)
                return None
            if isinstance(n, (ast.Lambda, ast.ClassDef)):
                return None
            if not isinstance(n, (ast.While, ast.For, ast.AsyncFor)) or child in n.orelse \
                    or not isinstance(n, ast.While) and child is n.iter:
                continue
            endless = self.endless(n)
            if not endless and not (fork and self.rounds(n) > FORK_DOUBLINGS):
                continue
            body = [x for s in n.body for x in own_nodes(s)]
            # A way out taken only on an error (except OSError: break) comes once the
            # system has no processes left.
            if any(self.leaves(x, exits) for s in n.body for x in own_nodes(s, handlers=False)):
                continue
            if fork:
                return "fork bomb: %s in a loop that %s, which its children run too: the processes double until " \
                       "the system has none left" % (what, "never ends" if endless else
                                                     "runs %d times" % self.rounds(n))
            if not any(isinstance(x, ast.Call) and call_name(x.func) in PACING for x in body):
                return "process exhaustion: %s in a loop that never ends, waits or is left starts processes until " \
                       "the system has none left" % what
        return None

    def endless(self, loop):
        """Whether a loop never ends by its own condition: while True (or a name assigned a
        true constant once), for over itertools.count(), cycle(), repeat(x) or iter(f, s)."""
        if isinstance(loop, ast.While):
            return self.truthy(loop.test) is True
        it = loop.iter
        if not isinstance(it, ast.Call):
            return False
        q = self.qualname(it.func)
        return q in ("itertools.count", "itertools.cycle") or (q == "itertools.repeat" and len(it.args) == 1
                                                                 and not it.keywords) \
            or (q in ("iter", "builtins.iter") and len(it.args) == 2)

    def rounds(self, loop):
        """How many times a for loop over range(n) with a constant n runs, else 0."""
        if isinstance(loop, ast.For) and isinstance(loop.iter, ast.Call) and self.qualname(loop.iter.func) == "range" \
                and len(loop.iter.args) == 1:
            return self.int_value(loop.iter.args[0]) or 0
        return 0

    def leaves(self, node, exits=()):
        """Whether node leaves a loop or the process: break (own_nodes leaves out those
        of nested loops), return, raise, sys.exit(), os._exit(), an os.exec*, or a call
        of a function of the module's that does one of these (exits)."""
        if isinstance(node, (ast.Return, ast.Raise)):
            return True
        if isinstance(node, ast.Break):
            return True
        if isinstance(node, ast.Call):
            q = self.qualname(node.func) or ""
            return q in EXIT_CALLS or q.startswith(("os.exec", "os.kill")) or \
                (isinstance(node.func, ast.Name) and node.func.id in exits)
        return False

    def recurses(self, func, parent, exits):
        """Whether a function calls itself unconditionally (not under an if, a loop that
        may not run, a try's handler, a boolean or conditional expression) and has no way
        out (return, raise, exit)."""
        mine = own_nodes(func, loops=True)
        if any(self.leaves(x, exits) for x in own_nodes(func, loops=True, handlers=False)
               if not isinstance(x, ast.Break)):
            return False
        for x in mine:
            if isinstance(x, ast.Call) and isinstance(x.func, ast.Name) and x.func.id == func.name:
                n = x
                while n is not func:
                    n = parent[n]
                    if isinstance(n, (ast.If, ast.IfExp, ast.BoolOp, ast.For, ast.AsyncFor, ast.ExceptHandler,
                                      ast.comprehension, ast.Match)) \
                            or isinstance(n, ast.While) and self.truthy(n.test) is not True:
                        break
                else:
                    return True
        return False


def own_nodes(node, loops=False, handlers=True):
    """The nodes of a statement that run as part of it: not those of the functions,
    lambdas and classes it defines, nor the breaks of the loops nested in it (unless
    loops), nor (unless handlers) those of its except clauses."""
    todo, out = [node], []
    while todo:
        n = todo.pop()
        out.append(n)
        for c in ast.iter_child_nodes(n):
            if isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)) \
                    or not handlers and isinstance(c, ast.ExceptHandler):
                continue
            if not loops and isinstance(c, (ast.While, ast.For, ast.AsyncFor)):
                out += [x for x in own_nodes(c, True, handlers) if not isinstance(x, ast.Break)]
                continue
            todo.append(c)
    return out


def call_name(f):
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


# Calls that fork the process: its children run on from the same place.
FORK_CALLS = {"os.fork", "os.forkpty", "pty.fork"}
# Calls that start another process (multiprocessing.Process and Pool are matched by name).
SPAWN_CALLS = {"subprocess.Popen", "os.posix_spawn", "os.posix_spawnp", "asyncio.create_subprocess_exec",
               "asyncio.create_subprocess_shell", "multiprocessing.Process", "multiprocessing.Pool"}
# A fork in a for loop of more rounds than this makes 2**rounds processes.
FORK_DOUBLINGS = 12
# Calls that end the process.
EXIT_CALLS = {"sys.exit", "exit", "quit", "builtins.exit", "os._exit", "os.abort"}
# Calls that block or wait, pacing a loop that starts processes: a supervisor's restart
# loop (p.start(); p.join()), a server's accept loop, a scheduler's sleep.
PACING = {"join", "wait", "waitpid", "wait3", "wait4", "waitid", "communicate", "sleep", "accept", "recv", "recvfrom",
          "recv_into", "read", "readline", "readlines", "input", "get", "select", "poll", "acquire", "result", "run",
          "call", "check_call", "check_output", "system", "urlopen", "serve_forever", "handle_request", "getch"}


# Where a value that holds a command string may go without being run (see DataFlow).
# DATA_FUNCS use their arguments as data: they test, compare, count or print them.
DATA_FUNCS = {"print", "len", "bool", "any", "all", "isinstance", "issubclass", "hash", "id", "type", "callable",
              "warnings.warn", "sys.exit", "click.echo", "typer.echo", "sys.stdout.write", "sys.stderr.write",
              "fnmatch.fnmatch", "fnmatch.fnmatchcase", "hmac.compare_digest", "secrets.compare_digest",
              "logging.debug", "logging.info", "logging.warning", "logging.warn", "logging.error",
              "logging.critical", "logging.exception", "logging.log", "pprint.pprint", "pprint.pp", "rich.print",
              "display", "IPython.display.display", "IPython.display.Markdown", "streamlit.write",
              "streamlit.dataframe", "streamlit.table", "streamlit.code", "streamlit.markdown", "streamlit.text"}
# Keywords of any call that document it (argparse's help=, click's help=): what they are
# given is shown, never run (default=, which the program reads back, is not one).
DOC_KEYWORDS = {"help", "description", "epilog", "usage", "metavar", "doc", "title", "summary", "caption",
                "tooltip", "placeholder", "short_help", "hint"}
# PASS_FUNCS return their arguments, or parts or copies of them: the result is followed.
PASS_FUNCS = {"list", "tuple", "set", "frozenset", "sorted", "reversed", "iter", "next", "enumerate", "zip", "str",
              "repr", "dict", "sum", "max", "min", "map", "filter", "itertools.chain", "itertools.chain.from_iterable",
              "shlex.split", "shlex.join", "shlex.quote", "re.escape", "re.compile", "re.sub", "re.subn",
              "re.findall", "re.finditer", "re.split", "re.search", "re.match", "re.fullmatch", "os.path.join",
              "copy.copy", "copy.deepcopy", "json.dumps", "json.loads", "textwrap.dedent", "collections.OrderedDict",
              "collections.deque", "types.MappingProxyType", "pandas.DataFrame", "pandas.Series",
              "pandas.DataFrame.from_records", "pandas.DataFrame.from_dict", "numpy.array", "numpy.asarray",
              "tabulate.tabulate", "pprint.pformat"}
# Functions that call a function they are given on the items (map(os.system, cmds)).
CALLBACK_FUNCS = {"map": 0, "filter": 0, "sorted": "key", "max": "key", "min": "key"}
# Methods of str, bytes, containers and compiled patterns: TEST_METHODS answer about the
# value they are called on or given (startswith, count); PASS_METHODS return it or a
# part (strip, split, items, join); FILL_METHODS put what they are given in the container
# they are called on, which is followed instead. Log methods take what they print.
TEST_METHODS = {"startswith", "endswith", "count", "find", "rfind", "index", "rindex", "__contains__", "isdigit",
                "isalpha", "isalnum", "isspace", "isupper", "islower", "issubset", "issuperset", "isdisjoint",
                "search", "match", "fullmatch", "debug", "info", "warning", "warn", "error", "critical",
                "exception", "log", "append", "extend", "insert", "add", "remove", "discard", "clear", "sort",
                "reverse", "update", "print", "pprint", "echo"}
PASS_METHODS = {"strip", "lstrip", "rstrip", "lower", "upper", "casefold", "title", "capitalize", "split", "rsplit",
                "splitlines", "partition", "rpartition", "replace", "removeprefix", "removesuffix", "format",
                "format_map", "join", "encode", "decode", "copy", "get", "items", "values", "keys", "pop",
                "setdefault", "union", "intersection", "difference", "symmetric_difference", "expandtabs", "ljust",
                "rjust", "center", "zfill", "__getitem__", "head", "tail", "to_string", "to_markdown", "to_dict",
                "to_records", "to_numpy", "tolist", "to_list", "iterrows", "itertuples", "sort_values", "sample",
                "unique", "drop_duplicates", "reset_index", "set_index", "fillna", "astype", "transpose"}
# Attributes of a container that are (parts of) its values: df.loc[...], df.values, s.str.
PASS_ATTRS = {"loc", "iloc", "at", "iat", "values", "T", "str", "array"}
FILL_METHODS = {"append", "extend", "insert", "add", "update", "setdefault", "__setitem__"}
# Calls whose pattern argument (the first) is used only to match: re.search(p, s).
PATTERN_FUNCS = {"re.search", "re.match", "re.fullmatch"}
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
# Calls and attributes that reach a value by a name computed at run time (globals()["X"],
# eval("X[0]"), sys.modules[__name__].X): in a module with one, every value may run.
REFLECTIVE_CALLS = {"globals", "locals", "vars", "eval", "exec", "compile", "getattr", "__import__",
                    "importlib.import_module", "importlib.__import__", "inspect.currentframe", "sys._getframe"}
REFLECTIVE_CALLS |= {"builtins." + n for n in REFLECTIVE_CALLS if "." not in n}
REFLECTIVE_NAMES = {n.rsplit(".", 1)[-1] for n in REFLECTIVE_CALLS}
REFLECTIVE_ATTRS = {"__dict__", "f_globals", "f_locals", "modules"}
# Names and modules that read the module's own values or source under other names:
# open(__file__), from __main__ import CMDS as X, inspect.getsource(...).
REFLECTIVE_LOADS = {"__file__", "__loader__", "__spec__", "__cached__"}
REFLECTIVE_MODULES = {"__main__", "inspect", "linecache"}
# Methods a class of the module's may define that receive a value compared with, looked up
# in or tested against its instances: then a comparison or a key may run.
COMPARE_HOOKS = {"__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__contains__"}
ITEM_HOOKS = {"__getitem__", "__missing__", "__class_getitem__"}
# What sends printed or logged text elsewhere than the process's own output (into a
# shell's stdin, a file): sys.stdout = ..., redirect_stdout, logging.basicConfig(stream=),
# a handler, or a class of the module's with a writer's or a handler's method.
OUTPUT_ATTRS = {"stdout", "stderr", "__stdout__", "__stderr__", "excepthook"}
OUTPUT_CALLS = {"redirect_stdout", "redirect_stderr", "dup2", "basicConfig", "addHandler", "setattr", "dictConfig",
                "fileConfig", "setStream"}
OUTPUT_METHODS = {"write", "writelines", "emit", "handle", "filter", "format"}
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "critical", "exception", "log"}
# Nodes without children a value can be in: contexts and operators.
LEAVES = (ast.expr_context, ast.operator, ast.boolop, ast.unaryop, ast.cmpop)


class DataFlow:
    """Where a value goes within the module, so a string that reads as a command but is
    only data is not reported: BLOCKED = ["rm -rf /", ...] tested with `cmd in BLOCKED`,
    any(b in cmd for b in BLOCKED), cmd.startswith(tuple(BLOCKED)), a regex made of it,
    or printed. The value is followed through names (by scope), attributes (by name),
    items, loops and comprehensions, containers, string operations, the parameters of
    functions defined in the module and their return values. Only the uses named above
    and in DATA_FUNCS / TEST_METHODS count as data; anything else (os.system(c),
    subprocess.run(CMDS[0], shell=True), a call to a function not defined here, a file
    write) may run it, and so does a value that is never used, or any value in a module
    that reaches names at run time (globals(), getattr, eval, sys.modules)."""

    BUDGET = 2000  # steps per value; beyond them the value may run

    def __init__(self, an, tree):
        self.an = an
        self.tree = tree
        self.parent = {}
        self.loads = {}   # name -> the Name nodes reading it
        self.attrs = {}   # attribute -> the Attribute nodes reading it
        self.funcs = {}   # function name -> its FunctionDef nodes
        self.calls = {}   # function or method name -> the calls of it by that name
        self.reflective = False
        self.classes = {}  # class name -> its ClassDef nodes
        self.methods = set()  # names of the functions defined in classes
        self.output_hooked = False  # printed or logged text may go elsewhere (OUTPUT_*)
        self.patched = set()  # classes of the module's given a method by C.m = f
        patched = []
        parent, AST, todo = self.parent, ast.AST, [tree]
        while todo:  # ast.walk and iter_child_nodes, in one loop at half the cost
            n = todo.pop()
            for field in n._fields:
                v = getattr(n, field, None)
                if type(v) is list:
                    for c in v:
                        if isinstance(c, AST):
                            parent[c] = n
                            todo.append(c)
                elif isinstance(v, AST) and not isinstance(v, LEAVES):
                    parent[v] = n
                    todo.append(v)
            t = type(n)
            if t is ast.Name:
                if type(n.ctx) is ast.Load:
                    self.loads.setdefault(n.id, []).append(n)
                    self.reflective = self.reflective or n.id in REFLECTIVE_LOADS
            elif t is ast.Attribute:
                if type(n.ctx) is ast.Load:
                    self.attrs.setdefault(n.attr, []).append(n)
                else:
                    self.output_hooked = self.output_hooked or n.attr in OUTPUT_ATTRS
                    if type(n.value) is ast.Name:
                        patched.append((n.value.id, n.attr))  # C.__init__ = f: a method too
                self.reflective = self.reflective or n.attr in REFLECTIVE_ATTRS
            elif t is ast.FunctionDef or t is ast.AsyncFunctionDef:
                self.funcs.setdefault(n.name, []).append(n)
            elif t is ast.ClassDef:
                self.classes.setdefault(n.name, []).append(n)
                for b in n.body:
                    # def m(...), and m = lambda ...: / m = f, which define a method too.
                    for name in class_methods(b):
                        self.methods.add(name)
                        self.output_hooked = self.output_hooked or name in OUTPUT_METHODS
            elif t is ast.Import or t is ast.ImportFrom:
                mods = [n.module or ""] if t is ast.ImportFrom else [a.name for a in n.names]
                self.reflective = self.reflective or any(m.split(".")[0] in REFLECTIVE_MODULES and
                                                         (t is ast.ImportFrom or m != "__main__") for m in mods)
            elif t is ast.Call:
                f = n.func
                name = f.id if type(f) is ast.Name else f.attr if type(f) is ast.Attribute else None
                if name:
                    self.calls.setdefault(name, []).append(n)
                    self.output_hooked = self.output_hooked or name in OUTPUT_CALLS
                    if not self.reflective and (name in REFLECTIVE_NAMES or type(f) is ast.Name and name in self.an.aliases):
                        self.reflective = self.an.qualname(f) in REFLECTIVE_CALLS
        for c, m in patched:
            if c in self.classes:
                self.patched.add(c)
                self.methods.add(m)
                self.output_hooked = self.output_hooked or m in OUTPUT_METHODS

    def may_run(self, start):
        """Whether the value of start may reach anything but a data use."""
        if self.reflective:
            return True
        work, seen, uses = [("node", start)], set(), 0
        while work:
            item = work.pop()
            if item in seen:
                continue
            seen.add(item)
            if len(seen) > self.BUDGET:
                return True
            kind = item[0]
            if kind == "node":
                r = self.step(item[1], work)
                if r is True:
                    return True
                uses += r == "use"
            elif kind == "name":
                scope = item[2]
                work.extend(("node", u) for u in self.loads.get(item[1], ()) if self.within(u, scope))
            elif kind == "attr":
                work.extend(("node", u) for u in self.attrs.get(item[1], ()))
            elif kind == "return":
                sites = self.calls.get(item[1], ())
                if not sites:
                    return True
                work.extend(("node", c) for c in sites)
        return uses == 0

    def within(self, node, scope):
        if scope is self.tree:
            return True
        while node is not None and node is not scope:
            node = self.parent.get(node)
        return node is scope

    def scope_of(self, node, ident):
        """The node whose body a name bound at node lives in: the function (the module if
        it declares the name global or nonlocal), the class, or the module."""
        p = self.parent.get(node)
        while p is not None and not isinstance(p, SCOPES):
            p = self.parent.get(p)
        if p is None:
            return self.tree
        if not isinstance(p, (ast.Lambda, ast.ClassDef)):
            for s in ast.walk(p):
                if isinstance(s, (ast.Global, ast.Nonlocal)) and ident in s.names:
                    return self.tree
        return p

    def bind(self, target, work, scope=None):
        """Follows the value into what an assignment, a loop or a comprehension binds."""
        t = type(target)
        if t is ast.Name:
            sc = scope or self.scope_of(target, target.id)
            work.append(("name", target.id, sc))
            if sc is self.tree or isinstance(sc, ast.ClassDef):
                work.append(("attr", target.id))  # self.BLOCKED, __main__.BLOCKED
        elif t is ast.Tuple or t is ast.List:
            for e in target.elts:
                if self.bind(e, work, scope):
                    return True
        elif t is ast.Starred:
            return self.bind(target.value, work, scope)
        elif t is ast.Attribute:
            work.append(("attr", target.attr))
        elif t is ast.Subscript:
            return self.fill(target.value, work)
        else:
            return True
        return None

    def fill(self, container, work):
        """Follows the value into the container it is stored in (d[k] = v, c.append(v)):
        a name (wherever it is read) or an attribute."""
        if type(container) is ast.Name:
            work.append(("name", container.id, self.tree))
        elif type(container) is ast.Attribute:
            work.append(("attr", container.attr))
        else:
            return True
        return None

    def harmless(self, f):
        """Whether a function handed to map(), filter() or key= does no more than test or
        transform its argument: str.lower, re.escape, cmd.startswith, lambda b: b in cmd."""
        if isinstance(f, ast.Lambda):
            return isinstance(f.body, ast.Compare)
        q = self.an.qualname(f) or ""
        if q in DATA_FUNCS or q in PASS_FUNCS:
            return True
        return isinstance(f, ast.Attribute) and f.attr not in self.funcs and not self.module_call(f) \
            and (f.attr in TEST_METHODS or f.attr in PASS_METHODS)

    def has_code(self, name, seen):
        """Whether name is a class of the module's that defines, or inherits from one of the
        module's, a method: its constructor, or its __str__ when it is printed, may run what
        it is given."""
        if name in seen:
            return False
        if name not in self.classes:
            v = self.an.once.get(name)  # E = RunError: the class under another name
            return type(v) is ast.Name and self.has_code(v.id, seen)
        seen.add(name)
        if name in self.patched:
            return True
        for c in self.classes[name]:
            # A method defined or assigned in the body, or a metaclass whose __call__ may run.
            if c.keywords or any(class_methods(b) for b in c.body):
                return True
            for base in c.bases:
                b = base.id if type(base) is ast.Name else base.attr if type(base) is ast.Attribute else None
                if b is not None and self.has_code(b, seen):
                    return True
        return False

    def module_call(self, f):
        """Whether f is a function of an imported module (os.system), not a method."""
        while isinstance(f, ast.Attribute):
            f = f.value
        return isinstance(f, ast.Name) and f.id in self.an.aliases

    def step(self, node, work):
        """Where the value of node goes next: True when it may run, "use" when it is used
        as data, None when what holds it next was queued."""
        p = self.parent.get(node)
        t = type(p)
        if (t is ast.Compare or t is ast.MatchValue) and not self.methods.isdisjoint(COMPARE_HOOKS):
            return True  # a class of the module's may be given the value to compare
        if t is ast.Compare or t is ast.MatchValue or t is ast.Expr or t is ast.Assert or t is ast.Raise \
                or t is ast.Slice or t is ast.If or t is ast.While or t is ast.comprehension and node is not p.iter:
            return "use"  # tested, compared, matched or discarded
        if t is ast.IfExp and node is p.test or t is ast.UnaryOp and isinstance(p.op, ast.Not):
            return "use"
        if t in (ast.IfExp, ast.UnaryOp, ast.BinOp, ast.BoolOp, ast.List, ast.Tuple, ast.Set, ast.Dict,
                 ast.FormattedValue, ast.JoinedStr, ast.Starred, ast.Await, ast.ListComp, ast.SetComp,
                 ast.GeneratorExp, ast.DictComp):
            work.append(("node", p))
            return None
        if t is ast.Subscript:
            if node is p.value:
                if type(p.ctx) is ast.Load:
                    work.append(("node", p))
                    return None
                return "use"  # BLOCKED[i] = x: what is stored is followed from x
            if type(p.ctx) is ast.Load:
                # A key: d[CMD], unless a class of the module's is given the keys it looks up.
                return True if not self.methods.isdisjoint(ITEM_HOOKS) else "use"
            return self.bind(p, work)  # d[CMD] = x
        if t is ast.comprehension:  # node is the iterable
            return self.bind(p.target, work, self.parent.get(p))
        if t is ast.For or t is ast.AsyncFor:
            return self.bind(p.target, work) if node is p.iter else True
        if t is ast.Assign or t is ast.AnnAssign or t is ast.AugAssign or t is ast.NamedExpr:
            if node is not p.value:
                return True
            for target in (p.targets if t is ast.Assign else [p.target]):
                if self.bind(target, work):
                    return True
            if t is ast.NamedExpr:
                work.append(("node", p))
            return None
        if t is ast.keyword:
            return self.call_use(self.parent.get(p), node, p.arg, work)
        if t is ast.Call:
            if node is p.func:
                return True
            pos = p.args.index(node) if node in p.args else None
            return self.call_use(p, node, pos, work)
        if t is ast.Attribute:  # a method called on the value
            call = self.parent.get(p)
            if type(call) is not ast.Call and p.attr in PASS_ATTRS and type(p.ctx) is ast.Load:
                work.append(("node", p))  # df.loc[i, "cmd"]: the value, followed
                return None
            if type(call) is not ast.Call or call.func is not p or p.attr in self.funcs:
                return True
            if p.attr in TEST_METHODS:
                return "use"
            if p.attr in PASS_METHODS:
                work.append(("node", call))
                return None
            return True
        if t is ast.Return:
            f = self.parent.get(p)
            while f is not None and not isinstance(f, SCOPES):
                f = self.parent.get(f)
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                work.append(("return", f.name))
                return None
        return True

    def call_use(self, call, node, pos, work):
        """Where a value passed to a call goes: pos is its position, or its keyword."""
        f = call.func
        q = self.an.qualname(f) or ""
        short = q.rsplit(".", 1)[-1]
        # A function defined here: the value goes on in its parameter.
        name = f.id if type(f) is ast.Name else f.attr if type(f) is ast.Attribute else None
        if name in self.funcs and not (type(f) is ast.Name and f.id in self.an.aliases):
            if pos is None or any(type(a) is ast.Starred for a in call.args):
                return True  # **kwargs or *args: the parameter is not known
            for d in self.funcs[name]:
                a = d.args
                params = [x.arg for x in a.posonlyargs + a.args]
                if type(f) is ast.Attribute and params and params[0] in ("self", "cls"):
                    params = params[1:]
                if isinstance(pos, int):
                    p = params[pos] if pos < len(params) else a.vararg.arg if a.vararg else None
                else:
                    p = pos if pos in params or pos in [x.arg for x in a.kwonlyargs] else \
                        a.kwarg.arg if a.kwarg else None
                if p is None:
                    return True
                work.append(("name", p, d))
            return None
        if type(pos) is str and pos in DOC_KEYWORDS and not self.output_hooked:
            return "use"  # help="runs rm -rf / on the target": shown, not run
        if self.output_hooked and (q == "print" or q.startswith("logging.") or
                                   type(f) is ast.Attribute and f.attr in LOG_METHODS):
            return True  # printed or logged where it may run (OUTPUT_*)
        if q == "print":
            out = self.an.kwarg(call, "file")
            return "use" if out is None or self.an.qualname(out) in ("sys.stdout", "sys.stderr") else True
        if q in PATTERN_FUNCS and (pos == 0 or pos == "pattern"):
            return "use"
        if q in DATA_FUNCS:
            return "use"
        if short in CALLBACK_FUNCS and q in PASS_FUNCS:
            which = CALLBACK_FUNCS[short]
            cb = call.args[which] if isinstance(which, int) and len(call.args) > which else self.an.kwarg(call, which) \
                if isinstance(which, str) else None
            if cb is node or cb is not None and not self.harmless(cb):
                return True
        if q in PASS_FUNCS:
            work.append(("node", call))
            return None
        if type(f) is ast.Attribute and not self.module_call(f):
            if f.attr in FILL_METHODS:
                return self.fill(f.value, work)
            if f.attr in ("search", "match", "fullmatch"):
                work.append(("node", call))  # a Match of the value: m.group() is the value
                return None
            if f.attr in TEST_METHODS:
                return "use"
            if f.attr in PASS_METHODS:
                work.append(("node", call))
                return None
        if short.endswith(("Error", "Exception", "Warning", "Exit")) and name not in self.funcs \
                and not self.has_code(name, set()):
            return "use"  # raise ValueError(f"refused: {cmd}")
        return True


def class_methods(b):
    """The names a statement of a class body defines as methods: def m(...), or m assigned
    something other than a constant (a lambda, a function of the module's)."""
    if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return [b.name]
    if isinstance(b, (ast.Assign, ast.AnnAssign)) and b.value is not None and not isinstance(b.value, ast.Constant):
        targets = b.targets if isinstance(b, ast.Assign) else [b.target]
        return [x.id for x in targets if isinstance(x, ast.Name)]
    return []


def params_of(a):
    """The parameter names of a function's arguments, positional ones first."""
    return [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]


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
                if type(n.value) is ast.Lambda:  # send = lambda x: requests.post(..., data=x)
                    an.defs.setdefault(n.targets[0].id, []).append(params_of(n.value.args))
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
            if t is not ast.ClassDef:
                an.functions.add(n.name)
                an.defs.setdefault(n.name, []).append(params_of(n.args))
        elif t is ast.arg:
            counts[n.arg] = counts.get(n.arg, 0) + 2
    an.defined = set(counts) | set(an.aliases)
    modules = {q.split(".")[0] for q in an.aliases.values()} | KNOWN_MODULES | {"builtins"}
    for n in assigns:
        if counts.get(n.targets[0].id) == 1 and an.placeholders(n.value):
            an.marks.add(n.targets[0].id)
    for n in assigns:
        # What names assigned once hold is known before any is resolved (see fold).
        name, v = n.targets[0].id, n.value
        if counts.get(name) == 1:
            an.once[name] = v
            if isinstance(v, ast.Constant):
                an.consts[name] = v
    for n in assigns:
        name, v = n.targets[0].id, n.value
        if counts.get(name, 0) > 1 and name not in an.aliases and isinstance(v, (ast.Name, ast.Attribute, ast.Subscript)):
            # f = print; f = os.system: a name bound anywhere to a checked callable may be it.
            q = an.qualname(v)
            if q in VALUE_CHECKS:
                an.aliases[name] = q
        if counts.get(name) == 1:
            if isinstance(v, ast.Constant):
                pass
            elif isinstance(v, ast.Dict) or (isinstance(v, ast.Call) and an.qualname(v.func) in ("dict", "builtins.dict")):
                an.dicts[name] = v
            elif isinstance(v, (ast.Name, ast.Attribute, ast.Subscript, ast.Call)) and name not in an.aliases:
                q = an.qualname(v)
                if q and "()" not in q and (q in KNOWN_NAMES or q.split(".")[0] in modules):
                    an.aliases[name] = q
        if an.built_sql(v):
            an.sql_names.add(name)
            an.sql_sources.setdefault(name, []).append(v)
    # Folds made before every alias was known (base64.b64decode under another name) are
    # made again when asked.
    an.folded.clear()
    an.fold_spent = 0
    # A dict whose name is read other than as params=, an item or in a comparison may be
    # changed where the analysis does not look (p.update(text=secret), an alias, a call).
    if an.dicts:
        for n in ast.walk(tree):
            for field, v in ast.iter_fields(n):
                for c in v if isinstance(v, list) else [v]:
                    if type(c) is Name and type(c.ctx) is ast.Load and c.id in an.dicts and not (
                            type(n) is ast.keyword and n.arg == "params" or type(n) is ast.Subscript and field == "value"
                            or type(n) is ast.Compare):
                        an.escaped.add(c.id)


# Syntax newer Pythons read that older ones do not, by what the line that does not parse
# starts with: said in the answer when the analyzer's Python is older than the feature's.
NEWER_SYNTAX = (
    (re.compile(r"^\s*type\s+[A-Za-z_]\w*\s*(\[[^\]]*\])?\s*="), "a type alias statement", (3, 12)),
    (re.compile(r"^\s*(async\s+)?(def|class)\s+[A-Za-z_]\w*\s*\["), "type parameters", (3, 12)),
    (re.compile(r"^\s*except\s*\*"), "except*", (3, 11)),
    (re.compile(r"^\s*(match|case)\b"), "a match statement", (3, 10)),
    (re.compile(r"[fF][rR]?(\"|')"), "an f-string (PEP 701 quotes and nesting)", (3, 12)),
)
# Code that does not parse is checked again with its failing lines skipped, at most this
# many of them, and only when it is at most REPAIR_BYTES long (each try parses it again).
MAX_REPAIRS = 8
REPAIR_BYTES = 256 << 10
LINE_BREAK = re.compile(r"(\r\n|\r|\n)")


def newer_syntax(line):
    """What newer syntax a line that does not parse may hold, for this interpreter."""
    for pattern, what, version in NEWER_SYNTAX:
        if sys.version_info[:2] < version and pattern.search(line):
            return "line reads like %s, Python %d.%d syntax" % ((what,) + version)
    return ""


def repaired(code, err):
    """Analyses code that does not parse with its failing lines skipped: each line where
    the parser stops is replaced by `pass` (by `if 1:` when it opens a block), keeping
    every other line and column where it was, and parsed again, up to MAX_REPAIRS times.
    Returns (findings, total, skipped lines), or None when no such version parses. Code
    the runner's interpreter reads (newer syntax) is then still checked, line by line
    outside what this interpreter cannot read."""
    if len(code) > REPAIR_BYTES or not isinstance(err, SyntaxError):
        return None
    parts = LINE_BREAK.split(code)  # line, break, line, break, ..., line
    skipped = []
    for _ in range(MAX_REPAIRS):
        n = err.lineno
        if not n or n in skipped or 2 * (n - 1) >= len(parts):
            return None
        line = parts[2 * (n - 1)]
        indent = line[:len(line) - len(line.lstrip(" \t"))]
        body = line.split("#", 1)[0].rstrip()
        parts[2 * (n - 1)] = indent + ("if 1:" if body.endswith(":") else "pass")
        skipped.append(n)
        try:
            findings, total = analyze("".join(parts))
            return findings, total, sorted(skipped)
        except SyntaxError as e:
            err = e
        except ValueError:
            return None
    return None


class Limit(Exception):
    """Code that cannot be checked within the analyzer's resources (too deeply nested,
    out of memory); the same code fails the same way again."""


# The depth of constant_code_findings: code compiled from a constant that compiles a
# constant... is followed this far.
CONSTANT_CODE_DEPTH = 2
constant_code_depth = 0


def constant_code_findings(src):
    """The findings of code held in a constant and compiled (compile("...", ...)): none
    when it does not parse (compile would fail) or is nested too deep to follow."""
    global constant_code_depth
    if constant_code_depth >= CONSTANT_CODE_DEPTH:
        return []
    if type(src) is bytes:
        src = src.decode("utf-8", "replace")
    constant_code_depth += 1
    try:
        return analyze(src)[0]
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []  # what compile() itself would refuse
    finally:
        constant_code_depth -= 1


def analyze(code):
    try:
        tree = ast.parse(code, mode="exec")
    except RecursionError:
        # A syntax tree deeper than this interpreter builds under main's recursion limit
        # (ten times the default) may still compile in the runner: the session's code may
        # have raised its interpreter's limit (sys.setrecursionlimit) in an earlier
        # execution. Code that cannot be parsed for want of resources is not checked, and
        # must not pass as clean.
        raise Limit("code nested too deeply to parse")
    # Credentials passed to the code's own functions and lambdas, or returned by them, are
    # found by one pass and followed by the next: the parameters that receive them hold
    # them, and calls of the functions that return them carry them (at most 3 passes).
    params, funcs = {}, set()
    for _ in range(3):
        an = Analyzer(len(code))
        prepare(tree, an)
        for name, env in params.items():
            an.tainted.add(name)
            an.taint_env[name] = env
        an.secret_funcs = set(funcs)
        an.findings = []
        an.visit(tree)
        an.finish(tree)
        new_params = {}
        for (fname, pos), env in an.param_flows:
            for args in an.defs.get(fname, ()):
                p = args[pos] if isinstance(pos, int) and pos < len(args) else pos if pos in args else None
                if p is not None and p not in params:
                    new_params[p] = env
        if not new_params and an.returns_secret <= funcs:
            break
        params.update(new_params)
        funcs |= an.returns_secret
    seen = set()
    out = []
    for f in an.findings:
        key = (f["check"], f["line"], f["col"])
        if key not in seen:
            seen.add(key)
            out.append(f)
    out.sort(key=lambda f: (f["line"], f["col"], f["check"]))
    return out[:MAX_FINDINGS], len(out)


def not_parsed(rid, code, e):
    """The answer for code that does not parse: the error, this interpreter's version, a
    hint when the failing line reads like newer syntax, and the findings of the code with
    its failing lines skipped (see repaired)."""
    resp = {"id": rid, "syntax_error": "%s: %s" % (type(e).__name__, e),
            "python": "%d.%d.%d" % sys.version_info[:3]}
    n = getattr(e, "lineno", None)
    lines = LINE_BREAK.split(code)[::2]
    if n and n <= len(lines):
        resp["syntax_line"] = n
        resp["hint"] = newer_syntax(lines[n - 1])
    rep = repaired(code, e)
    if rep is not None:
        resp["findings"], resp["total"], resp["skipped"] = rep
    return resp


def answer(rid, code):
    try:
        try:
            findings, total = analyze(code)
            return {"id": rid, "findings": findings, "total": total}
        except (SyntaxError, ValueError) as e:
            return not_parsed(rid, code, e)
    except Limit as e:
        return {"id": rid, "limit": str(e)}
    except RecursionError:
        # The tree parsed but is too deep for the checks: the code may still run.
        return {"id": rid, "limit": "code nested too deeply to analyse"}
    except MemoryError:
        # Python 3.11's parser raises a bare MemoryError when its stack overflows,
        # as it does when memory runs out: code that cannot be checked either way.
        return {"id": rid, "limit": "out of memory parsing or analysing the code: nested too deeply for Python's parser, or too large"}
    except Exception as e:  # noqa: BLE001 - the plugin must get an answer
        return {"id": rid, "error": "%s: %s" % (type(e).__name__, e)}


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
        out.write(json.dumps(answer(req.get("id"), req.get("code", ""))) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
