# LIMIT runner-python worker: one long-lived interpreter per session, inside the sandbox
# the plugin set up. It runs each execution in the session's persistent globals.
#
# The plugin starts it as `python -s -c <loader> <this source> [flags]`, or with this source
# compiled ahead (marshalled, in base64) and a loader that runs it.
#
# File descriptors: 0 /dev/null, 1 and 2 the stdout and stderr pipes (read by the plugin,
# so output of child processes is captured too), 3 frames from the plugin, 4 frames to
# the plugin. A frame is a 4-byte big-endian length, a type byte, then fields (a key
# byte, a 4-byte big-endian length, the value). Nothing is imported that the interpreter
# has not loaded at start-up already, to keep the start fast; traceback is imported on
# the first error.
import builtins
import io
import os
import sys
import time
import _ast
import _signal

CTL_IN, CTL_OUT = 3, 4
# Programs the code starts must not inherit the protocol pipes.
os.set_inheritable(CTL_IN, False)
os.set_inheritable(CTL_OUT, False)
PID = os.getpid()
MAX_TEXT = 1 << 20  # cap of an error text or value repr in a frame
MAX_SOURCES = 500  # executions whose source is kept for tracebacks
SELF_FILE = sys._getframe().f_code.co_filename  # "<limit-worker>"
FLAGS = sys.argv[2:]  # sys.argv[1] is this program's source

if "keep-lc-ctype" not in FLAGS:
    # Python's C-locale coercion (PEP 538) sets LC_CTYPE in its own environment; the
    # code must see only the variables the configuration passed.
    os.environ.pop("LC_CTYPE", None)
for _arg in FLAGS:
    if _arg.startswith("rlimit-as="):
        # Only without a memory cgroup: the address-space limit makes allocations fail
        # with MemoryError instead.
        import resource
        _v = int(_arg.split("=", 1)[1])
        resource.setrlimit(resource.RLIMIT_AS, (_v, _v))
sys.argv = [""]


def _stream(fd):
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(io.BufferedWriter(raw, 1 << 16), encoding="utf-8",
                            errors="backslashreplace", line_buffering=True)


sys.stdout = sys.__stdout__ = _stream(1)
sys.stderr = sys.__stderr__ = _stream(2)

_running = False


def _on_sigint(signum, frame):
    # The plugin interrupts an execution with SIGINT (timeout, cancel). Outside user code
    # the signal is ignored, so a late interrupt cannot break the protocol.
    if _running:
        raise KeyboardInterrupt


_signal.signal(_signal.SIGINT, _on_sigint)
for _sig in ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"):
    _signal.signal(getattr(_signal, _sig), _signal.SIG_DFL)


def _encode(typ, fields):
    parts = [typ]
    for k, v in fields:
        if isinstance(v, str):
            v = v.encode("utf-8", "backslashreplace")
        elif isinstance(v, int):
            v = str(v).encode()
        parts.append(k + len(v).to_bytes(4, "big") + v)
    body = b"".join(parts)
    return len(body).to_bytes(4, "big") + body


def _send(typ, fields):
    view = memoryview(_encode(typ, fields))
    while view:
        n = os.write(CTL_OUT, view)
        view = view[n:]


_inbuf = bytearray()


def _recv():
    global _inbuf
    while True:
        if len(_inbuf) >= 4:
            n = int.from_bytes(_inbuf[:4], "big")
            if len(_inbuf) >= 4 + n:
                body = bytes(_inbuf[4:4 + n])
                del _inbuf[:4 + n]
                return body[:1], _fields(body[1:])
        chunk = os.read(CTL_IN, 1 << 16)
        if not chunk:
            os._exit(0)  # the plugin is gone
        _inbuf += chunk


def _fields(b):
    out = {}
    i = 0
    while i + 5 <= len(b):
        n = int.from_bytes(b[i + 1:i + 5], "big")
        out[b[i:i + 1]] = b[i + 5:i + 5 + n]
        i += 5 + n
    return out


_cut = False  # _cap cut a text of the current execution


def _cap(s, tail=False):
    # The plugin cuts the text again to the session's max_output_bytes; this bounds the
    # frame. An error keeps its end too: the exception is named there.
    global _cut
    if len(s) <= MAX_TEXT:
        return s
    _cut = True
    if tail:
        half = MAX_TEXT // 2
        return "%s\n[... %d characters cut ...]\n%s" % (s[:half], len(s) - 2 * half, s[-half:])
    return s[:MAX_TEXT] + "\n[... truncated]"


def _flush():
    for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            s.flush()
        except BaseException:
            pass


main = type(sys)("__main__")
main.__builtins__ = builtins
sys.modules["__main__"] = main
_globals = main.__dict__
_sources = {}


def _format(exc):
    import linecache
    import traceback
    for name, src in _sources.items():
        linecache.cache[name] = (len(src), None, src.splitlines(True), name)
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    # Drop the worker's own frames (the exec call, the SIGINT handler) from the stack.
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if f.filename != SELF_FILE])
    return _cap("".join(te.format()), True)


def _run(name, code):
    tree = compile(code, name, "exec", _ast.PyCF_ONLY_AST)
    last = None
    if tree.body and isinstance(tree.body[-1], _ast.Expr):
        last = _ast.Expression(tree.body.pop().value)
    exec(compile(tree, name, "exec"), _globals)
    if last is not None:
        value = eval(compile(last, name, "eval"), _globals)
        if value is not None:
            return repr(value)
    return None


def _child_exit(exc):
    # A process forked by the code came back here: it must never speak the protocol.
    code = 0
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    elif exc is not None:
        code = 1
    _flush()
    os._exit(code)


def _execute(cell, fields):
    global _running, _cut
    _cut = False
    eid = fields.get(b"i", b"")
    name = "<exec-%d>" % cell
    code = fields.get(b"c", b"").decode("utf-8", "surrogateescape")
    _sources[name] = code
    if len(_sources) > MAX_SOURCES:
        del _sources[next(iter(_sources))]
    cpu0 = time.process_time()
    exc = None
    value = None
    try:
        _running = True
        try:
            value = _run(name, code)
        finally:
            _running = False
    except BaseException as e:
        exc = e
    if os.getpid() != PID:
        _child_exit(exc)
    _flush()
    cpu_us = int((time.process_time() - cpu0) * 1e6)
    out = [(b"i", eid), (b"m", cpu_us)]
    if exc is None:
        out.append((b"s", "ok"))
        if value is not None:
            out.append((b"r", _cap(value)))
    elif isinstance(exc, SystemExit):
        c = exc.code
        if c is None:
            c = 0
        elif not isinstance(c, int):
            print(c, file=sys.stderr)
            _flush()
            c = 1
        out += [(b"s", "exit"), (b"x", c), (b"t", "SystemExit")]
    else:
        try:
            text = _format(exc)
        except BaseException:
            text = "%s (the traceback could not be formatted)" % type(exc).__name__
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
        errno = getattr(exc, "errno", None)
        out += [(b"s", status), (b"x", 1), (b"e", text), (b"t", type(exc).__name__)]
        if isinstance(errno, int):
            out.append((b"n", errno))
    del exc
    if _cut:
        out.append((b"k", 1))
    try:
        _send(b"D", out)
    except MemoryError:
        _send(b"D", [(b"i", eid), (b"s", "error"), (b"x", 1), (b"t", "MemoryError"),
                     (b"e", "MemoryError (no memory left to describe it)")])


# Memory kept back while the worker itself runs, released when it runs out (the code
# filled the address-space limit): enough to report the failure and read the next frame.
_reserve = bytearray(1 << 20)


def _loop():
    global _reserve
    sys.path.insert(0, os.getcwd())
    _send(b"R", [(b"p", PID), (b"v", sys.version.split()[0]), (b"u", os.getuid())])
    cell = 0
    while True:
        eid = b""
        try:
            if _reserve is None:
                _reserve = bytearray(1 << 20)
        except MemoryError:
            pass
        try:
            typ, fields = _recv()
            if typ == b"E":
                eid = fields.get(b"i", b"")
                cell += 1
                _execute(cell, fields)
        except BaseException as e:
            # The worker's own code failed (out of memory, most likely): the execution
            # ends with an error, never the worker. An empty id means "the current one".
            _reserve = None
            if os.getpid() != PID:
                os._exit(1)
            try:
                _send(b"D", [(b"i", eid), (b"s", "error"), (b"x", 1), (b"t", type(e).__name__),
                             (b"e", "%s in the worker (%s); the session's state is kept"
                              % (type(e).__name__, e))])
            except BaseException:
                os._exit(70)


_loop()
