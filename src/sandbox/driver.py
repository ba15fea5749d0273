# The in-sandbox driver of a code_interpreter session (see sandbox-process.ts for the host's side).
#
# Started by bwrap as `python3 -I -c <this file> <config json>`. It speaks JSON lines: requests on a private dup of
# stdin, replies on a private dup of stdout. Fd 0 then reads /dev/null and fds 1 and 2 write into a pipe whose
# reader keeps each cell's output, so nothing the user's code (or a process it starts) prints can reach the
# protocol by accident. Code that sets out to corrupt the protocol can: the host treats anything unexpected as a
# protocol violation and kills the session, so it only ever harms its own session.
#
# Requests (one line each, with an `id`):
#   {"op": "run", "code": str}                                   → images, then a result
#   {"op": "interrupt"}                                          (no reply: SIGINT to a running cell)
#   {"op": "write", "name": str, "data": base64, "append": bool} → ok
#   {"op": "read", "name": str, "max": int}                      → chunks, then ok with the size
#   {"op": "list"}                                               → ok with the files
#   {"op": "remove", "name": str}                                → ok (also when there was no such file)
#   {"op": "link", "name": str, "target": str}                   → ok (name: a symbolic link to target, beside it)
# Replies: {"id", "type": "ready"|"image"|"result"|"chunk"|"ok"|"error", ...}.

import ast
import base64
import builtins
import codecs
import contextlib
import heapq
import importlib.abc
import importlib.util
import io
import json
import linecache
import os
import re
import resource
import runpy
import shlex
import signal
import stat
import subprocess
import sys
import threading
import time
import timeit
import tokenize
import traceback
import types

CONFIG = json.loads(sys.argv[1])
DATA_DIR = "/mnt/data"
CHUNK_BYTES = 1 << 20  # a read reply's chunk, before base64
MAX_IMAGES = 16
MAX_IMAGE_BYTES = 8 << 20
MAX_LIST = 1000  # files listed: the most recently modified
MAX_LIST_SCAN = 100_000  # directory entries looked at, in all
MAX_LIST_DEPTH = 8


def set_limits():
    """Soft and hard limits alike: without CAP_SYS_RESOURCE in the host's namespace, no one can raise them again."""
    both = lambda value: (value, value)  # noqa: E731
    resource.setrlimit(resource.RLIMIT_AS, both(CONFIG["memoryBytes"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, both(CONFIG["maxFileBytes"]))
    # Soft at the hard limit: the driver is its pid namespace's init, and Linux drops the soft limit's SIGXCPU sent
    # to an init without a handler, so a session spun on for 5 CPU-seconds past a soft limit below the hard one.
    resource.setrlimit(resource.RLIMIT_CPU, both(CONFIG["cpuSeconds"]))
    resource.setrlimit(resource.RLIMIT_CORE, both(0))
    resource.setrlimit(resource.RLIMIT_NOFILE, both(1024))
    # Counted per uid within the sandbox's own user namespace (Linux ≥ 5.14 keeps one count per namespace), so this
    # bounds the processes of this session only.
    resource.setrlimit(resource.RLIMIT_NPROC, both(CONFIG["maxProcesses"]))


# ── the protocol ─────────────────────────────────────────────────────────────

PROTO_IN = os.dup(0)
PROTO_OUT = os.dup(1)  # os.dup's fds are not inherited by the processes a cell starts
_null = os.open("/dev/null", os.O_RDONLY)
os.dup2(_null, 0)
os.close(_null)
_send_lock = threading.Lock()


DRIVER_PID = os.getpid()


def send(message):
    if os.getpid() != DRIVER_PID:
        os._exit(0)  # a process the cell forked came back into the driver: it must not speak for it
    line = (json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8", "replace")
    with _send_lock:
        view = memoryview(line)
        while view:
            view = view[os.write(PROTO_OUT, view):]


# ── output capture ───────────────────────────────────────────────────────────


class Output:
    """A cell's output, capped as it comes: the first and the last `limit // 2` characters, and a count of the rest."""

    def __init__(self, limit):
        self.lock = threading.Lock()
        self.half = max(1, limit // 2)
        self.reset()

    def reset(self):
        with self.lock:
            self.head = []
            self.head_len = 0
            self.tail = []
            self.tail_len = 0
            self.dropped = 0

    def write(self, text):
        if not text:
            return
        with self.lock:
            room = self.half - self.head_len
            if room > 0:
                piece = text[:room]
                self.head.append(piece)
                self.head_len += len(piece)
                text = text[room:]
                if not text:
                    return
            if len(text) >= self.half:
                self.dropped += self.tail_len + len(text) - self.half
                self.tail = [text[-self.half:]]
                self.tail_len = self.half
                return
            self.tail.append(text)
            self.tail_len += len(text)
            if self.tail_len > 2 * self.half:
                joined = "".join(self.tail)
                self.dropped += len(joined) - self.half
                self.tail = [joined[-self.half:]]
                self.tail_len = self.half

    def text(self):
        with self.lock:
            tail = "".join(self.tail)
            if self.tail_len > self.half:
                self.dropped += self.tail_len - self.half
                tail = tail[-self.half:]
            head = "".join(self.head)
            if not self.dropped:
                return head + tail
            # The words of output-note.ts, which the server matches.
            return f"{head}\n…[output truncated: {self.dropped:,} more characters]\n{tail}"


OUTPUT = Output(CONFIG["outputChars"])


_MARK = b"\0assistd-output-drained\0"
_pipe_read, _pipe_write = os.pipe()  # both private: os.pipe's fds are not inherited
_drained = threading.Event()


def pump_fd_output():
    """Reads what processes write to fds 1 and 2 (a subprocess, C code) into OUTPUT, so the pipe never fills."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = b""
    while True:
        chunk = os.read(_pipe_read, 65536)
        if not chunk:
            return
        pending += chunk
        at = pending.find(_MARK)
        if at == -1:
            keep = len(_MARK) - 1  # a mark may be split across reads
            OUTPUT.write(decoder.decode(pending[:-keep]))
            pending = pending[-keep:]
            continue
        OUTPUT.write(decoder.decode(pending[:at]))
        pending = pending[at + len(_MARK):]
        _drained.set()


def drain_fd_output():
    """Waits until everything written to fds 1 and 2 so far is in OUTPUT."""
    _drained.clear()
    try:
        os.write(1, _MARK)
    except OSError:
        return  # the cell closed fd 1
    _drained.wait(1)


def install_streams():
    """Points fds 1 and 2 at the capture pipe and sys.stdout/stderr at them, as a cell may have changed any of them.

    Both streams are line-buffered into the one pipe, so a cell's output and what its processes print interleave
    line by line in the order written, as in a terminal.
    """
    os.dup2(_pipe_write, 1)
    os.dup2(_pipe_write, 2)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not STREAMS.get(name) or stream.closed:
            fd = 1 if name == "stdout" else 2
            STREAMS[name] = io.TextIOWrapper(
                io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True
            )
            setattr(sys, name, STREAMS[name])
            setattr(sys, f"__{name}__", STREAMS[name])


def flush_streams():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 (a stream the cell broke)
            pass


STREAMS = {}
sys.stdin = open(0, "r", closefd=False)
install_streams()


# ── interrupts ───────────────────────────────────────────────────────────────

# running: the cell's code (or its figures' saving) runs, and a SIGINT interrupts it. interrupted: the host asked for
# an interrupt during the cell's request, remembered for when it came between the code's end and the figures.
_cell = {"running": False, "interrupted": False}


def on_sigint(signum, frame):
    # A SIGINT that arrives once the cell is over (the host's interrupt raced the cell's end) is dropped.
    if _cell["running"]:
        raise KeyboardInterrupt


def read_requests(requests):
    """Reads the host's requests; an interrupt is acted on here at once, anything else queued for the main thread."""
    with os.fdopen(PROTO_IN, "rb", buffering=1 << 16) as source:
        for line in source:
            message = json.loads(line)
            if message.get("op") == "interrupt":
                _cell["interrupted"] = True
                if _cell["running"]:
                    os.kill(os.getpid(), signal.SIGINT)
                continue
            if message.get("op") == "run":
                _cell["interrupted"] = False  # an interrupt read after this line is this cell's
            requests.append(message)
            _has_request.release()
    os._exit(0)  # the host closed stdin: it is done with this session


_has_request = threading.Semaphore(0)

# ── images ───────────────────────────────────────────────────────────────────

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PIL's modes a PNG holds as they are; any other is converted first, with its alpha if it has one.
PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}
PNG_CONVERSIONS = {"La": "LA", "PA": "RGBA", "RGBa": "RGBA"}  # else RGB (CMYK, YCbCr, F, I;16B…)


class CellImages:
    """The PNGs a cell shows, in the order shown: by display() or as its last expression while it runs, then the
    pyplot figures it leaves open. They are sent with the cell's result, not as shown: an interrupt could cut a line
    of the protocol in two. MAX_IMAGES and MAX_IMAGE_BYTES hold for all of them together."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.pngs = []
        # The figures display() showed, which are not saved again when left open. Held for the cell: `is` then
        # cannot mistake a new figure for one collected meanwhile.
        self.displayed = []
        self.noted_full = False

    def was_displayed(self, figure):
        return any(figure is shown for shown in self.displayed)

    def room(self, note):
        """Whether one more image is taken; the first time not, `note` says so."""
        if len(self.pngs) < MAX_IMAGES:
            return True
        if not self.noted_full:
            self.noted_full = True
            note(f"[only the first {MAX_IMAGES} images are returned]")
        return False

    def add(self, png, what, note):
        if len(png) > MAX_IMAGE_BYTES:
            note(f"[{what} left out: its PNG has {len(png):,} bytes, over {MAX_IMAGE_BYTES:,}]")
            return
        self.pngs.append(png)


IMAGES = CellImages()


class ImageLeftOut(Exception):
    """An image that cannot be shown here; its message is the note the output gets instead."""


class IPythonImage:
    """IPython.display.Image in the stand-in: an image from bytes or a file, read at once as IPython does. A URL is
    kept but not fetched (the sandbox has no network)."""

    def __init__(self, data=None, url=None, filename=None, **options):
        if isinstance(data, str):  # IPython's reading of a string: a URL, else a file name
            if data.startswith(("http://", "https://")):
                url = data
            else:
                filename = data
            data = None
        if filename is not None:
            with open(filename, "rb") as file:
                data = file.read()
        self.data = None if data is None else bytes(data)
        self.url = url
        self.filename = filename
        self.options = options  # format, width, height…: the PNG is shown as it is

    def __repr__(self):
        return "<IPython.core.display.Image object>"

    def png(self):
        """Its bytes as a PNG: the host takes PNG only (it names each image <call>-<n>.png), so other formats are
        converted with PIL."""
        if self.data is None:
            raise ImageLeftOut(f"[the image at {self.url} left out: the sandbox has no network]")
        if self.data.startswith(PNG_SIGNATURE):
            return self.data
        try:
            from PIL import Image as pil
        except ImportError:
            raise ImageLeftOut("[an image left out: it is not a PNG, and PIL, to convert it, is missing]") from None
        try:
            with pil.open(io.BytesIO(self.data)) as image:
                return pil_png(image)
        except OSError:  # not an image: a notebook shows a broken one, here a note says why there is none
            raise ImageLeftOut("[an image left out: its data is not an image PIL can read]") from None


def figure_png(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def pil_png(image):
    if image.mode not in PNG_MODES:
        image = image.convert(PNG_CONVERSIONS.get(image.mode, "RGB"))
    buffer = io.BytesIO()
    image.save(buffer, format="png")
    return buffer.getvalue()


def image_saver(obj):
    """What `obj` is and how to save it as a PNG if a notebook shows it as an image (a matplotlib figure, a PIL
    image, an IPython.display.Image), else None. Their modules are looked up, not imported: the driver runs without
    them, and an object of a module never imported cannot be here."""
    figure = sys.modules.get("matplotlib.figure")
    if figure is not None and isinstance(obj, figure.Figure):
        # A figure with nothing drawn is shown as its text, as a notebook shows it: `<Figure size … with 0 Axes>`.
        return ("a figure", lambda: displayed_figure_png(obj)) if obj.axes or obj.lines else None
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(obj, pil.Image):
        return "an image", lambda: pil_png(obj)
    if isinstance(obj, IPythonImage):
        return "an image", obj.png
    return None


def displayed_figure_png(figure):
    # Shown now, so not again at the cell's end if left open. Marked before it is saved: a figure whose saving was
    # interrupted is not saved again then either, which would take as long as the grace period allows.
    IMAGES.displayed.append(figure)
    return figure_png(figure)


def show_image(obj, note):
    """Shows `obj` as an image if a notebook would, saving it now (so it is shown as it is now, and an interrupt
    stops the saving as it stops the cell); False for anything else. Why an image is not shown is `note`d."""
    saver = image_saver(obj)
    if saver is None:
        return False
    what, save = saver
    if IMAGES.room(note):
        try:
            IMAGES.add(save(), what, note)
        except ImageLeftOut as left_out:
            note(str(left_out))
    return True


# ── cells ────────────────────────────────────────────────────────────────────

main_module = types.ModuleType("__main__")
sys.modules["__main__"] = main_module
NAMESPACE = main_module.__dict__
_cell_count = [0]


def display(*objs, **_options):
    """A notebook's display(): a figure or an image is shown as one (show_image), anything else as its text form on a
    line of the output, where a print would be."""
    for obj in objs:
        if not show_image(obj, print):
            print(repr(obj))


class IPythonStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import IPython.display` where IPython is not installed: a stand-in with `display` and `Image`, found last on
    the path.

    Its `get_ipython()` returns None, as an installed IPython outside a kernel does: libraries that look for IPython
    (matplotlib, pandas) then behave as in a script.
    """

    def find_spec(self, name, path=None, target=None):
        if name not in ("IPython", "IPython.display"):
            return None
        return importlib.util.spec_from_loader(name, self, is_package=name == "IPython")

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ == "IPython":
            module.get_ipython = lambda: None
        else:
            module.display = display
            module.Image = IPythonImage


class StdinNotImplementedError(IOError, NotImplementedError):
    """IPython's error for input() in a kernel whose frontend takes no input, as here."""


def no_input(prompt=""):
    raise StdinNotImplementedError("raw_input was called, but this frontend does not support input requests.")


# Models write `display(df)` (a notebook's built-in) and `from IPython.display import display`: both work.
builtins.display = display
builtins.input = no_input
sys.meta_path.append(IPythonStandIn())


def kill_strays():
    """Kills every process a cell left behind (a fork bomb, a background job), so none outlives the cell."""
    me = str(os.getpid())
    for attempt in range(2000):
        try:
            os.kill(-1, signal.SIGKILL)  # every process of the sandbox's pid namespace but this one, its pid 1
        except ProcessLookupError:
            pass
        while True:  # reap them: as pid 1, this process is every orphan's parent
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not any(p.isdigit() and p != "1" and p != me for p in os.listdir("/proc")):
            return
        time.sleep(0.001)


def run_code(code):
    _cell_count[0] += 1
    filename = cell_filename()
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    execute(code, filename)


def cell_filename():
    return f"<cell {_cell_count[0]}>"


def execute(code, filename):
    """Runs code as a notebook runs a cell: the value of its last expression is shown."""
    try:
        tree = ast.parse(code, filename, "exec")
    except SyntaxError as error:
        tree = notebook_tree(code, filename, error)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, filename, "exec"), NAMESPACE)
    if last is not None:
        value = eval(compile(last, filename, "eval"), NAMESPACE)
        if value is not None:
            NAMESPACE["_"] = value
            if not show_image(value, write_after_prints):
                write_after_prints(repr(value))


def notebook_tree(code, filename, error):
    """The cell read as a notebook's (notebook_code), when plain Python refused it with `error`; else that error,
    about the code as the cell has it."""
    notebook = notebook_code(code)
    if notebook is None:
        raise error.with_traceback(None)  # ast's frames are not the cell's
    try:
        return ast.parse(notebook, filename, "exec")
    except SyntaxError as other:
        # An error on a line of the cell's own (not one rewritten) is the one to show.
        at = slice((other.lineno or 0) - 1, other.lineno or 0)
        rewritten = other.lineno is None or code.splitlines()[at] != notebook.splitlines()[at]
        raise (error if rewritten else other).with_traceback(None) from None


# ── a notebook's shell escapes and magics ────────────────────────────────────

# IPython's aliases of shell commands, usable as line magics (`%ls`).
SHELL_ALIASES = {"cat", "cp", "ls", "mkdir", "mv", "rm", "rmdir"}
# Magics that set up what the sandbox already is (inline figures): nothing to do.
SETUP_MAGICS = {"matplotlib", "config", "load_ext", "reload_ext", "autoreload"}
ESCAPED_LINE = re.compile(r"([ \t]*)(%%|%|!)(.*?)(\r?\n)?$", re.DOTALL)


class UsageError(Exception):
    """A magic used wrongly or unknown: IPython's message alone, without a traceback."""


def notebook_code(code):
    """The cell as Python if it is a notebook's cell that plain Python refuses: `!command` (the shell), `%magic args`
    lines, and a cell starting with a `%%magic` line, each made a call (a line for a line, so tracebacks point at the
    cell's own lines). None when it has none of them. A line that continues a statement is left as it is."""
    lines = code.splitlines(True)
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and lines[first].lstrip().startswith("%%"):
        name, _, args = lines[first].strip()[2:].partition(" ")
        body = "\n" * (first + 1) + "".join(lines[first + 1:])  # its lines numbered as in the cell
        return "\n" * first + f"__assistd_cell_magic__({name!r}, {args.strip()!r}, {body!r})\n"
    continued = continued_lines(code)
    changed = False
    for i, line in enumerate(lines):
        match = ESCAPED_LINE.match(line)
        if match is None or i + 1 in continued or match.group(2) == "%%":
            continue
        indent, escape, command, newline = match.groups()
        if escape == "!":
            lines[i] = f"{indent}__assistd_shell__({command.strip()!r}){newline or ''}"
        else:
            name, _, args = command.strip().partition(" ")
            lines[i] = f"{indent}__assistd_magic__({name!r}, {args.strip()!r}){newline or ''}"
        changed = True
    return "".join(lines) if changed else None


def continued_lines(code):
    """The numbers of the lines that continue a statement begun above (in a multi-line string, or inside brackets),
    whose `%` or `!` is not a notebook's."""
    continued = set()
    depth = 0
    line = 0
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.start[0] > line and depth > 0:
                continued.add(token.start[0])
            line = token.end[0]
            if token.type == tokenize.STRING:
                continued.update(range(token.start[0] + 1, token.end[0] + 1))
            elif token.type == tokenize.OP and token.string in "([{":
                depth += 1
            elif token.type == tokenize.OP and token.string in ")]}":
                depth = max(0, depth - 1)
    except (tokenize.TokenError, SyntaxError):
        pass  # unbalanced to its end: the lines read before are known
    return continued


def shell(command, program="/bin/sh"):
    """`!command`: run by the shell, its output in the cell's, as in a notebook."""
    flush_streams()
    subprocess.run([program, "-c", command], stdin=subprocess.DEVNULL, check=False)


def shell_line(command):
    """A `!command` line: its `{expression}`s and `$name`s expanded first, from where the line is, as IPython does."""
    caller = sys._getframe(1)
    shell(expand(command, {**caller.f_globals, **caller.f_locals}))


SHELL_FIELD = re.compile(r"\$\$|\$([A-Za-z_][A-Za-z0-9_]*)|\{([^{}]+)\}")


def expand(command, namespace):
    """IPython's expansion of a shell command: `{expression}` and `$name` become their values, `$$` a `$`; a command
    with any that cannot be (`awk '{print $1}'`, `${HOME}`, an unknown name) is run as written."""

    def value(match):
        if match.group(0) == "$$":
            return "$"
        if match.group(1) is not None:
            return str(namespace[match.group(1)])
        return str(eval(match.group(2), namespace))

    try:
        return SHELL_FIELD.sub(value, command)
    except Exception:  # noqa: BLE001 (anything the expression raises: the command is the shell's)
        return command


def line_magic(name, args):
    if name in SETUP_MAGICS:
        return None
    if name == "time":
        return timed(lambda: execute(args, cell_filename()) if args else None)
    if name == "timeit":
        return time_it(args)
    caller = sys._getframe(1)  # the arguments of the others are expanded as a `!` line's (not code's, as those)
    args = expand(args, {**caller.f_globals, **caller.f_locals})
    if name == "run":
        return run_file(args)
    if name in ("pip", "conda"):
        return shell(f"{sys.executable} -m pip {args}" if name == "pip" else f"conda {args}")
    if name in SHELL_ALIASES:
        return shell(f"{name} {args}")
    if name == "cd":
        os.chdir(os.path.expanduser(args or "~"))
        print(os.getcwd())
        return None
    if name == "pwd":
        return os.getcwd()
    raise UsageError(f"Line magic function `%{name}` not found.")


def cell_magic(name, args, body):
    """A `%%name args` cell; `body` is the rest of the cell, after as many empty lines as the cell has above it."""
    if name == "time":
        return timed(lambda: execute(body, cell_filename()))
    if name in ("bash", "sh"):
        return shell(body.lstrip("\n"), f"/bin/{name}")
    if name == "writefile":
        append = args.startswith("-a ")
        target = os.path.expanduser(args[3:].strip() if append else args)
        if not target:
            raise UsageError("%%writefile is missing the name of the file to write.")
        verb = "Appending to" if append else "Overwriting" if os.path.exists(target) else "Writing"
        print(f"{verb} {target}")
        with open(target, "a" if append else "w", encoding="utf-8") as file:
            file.write(body.lstrip("\n"))
        return None
    raise UsageError(f"Cell magic `%%{name}` not found.")


def timed(run):
    """`%time` and `%%time`: runs, then prints the times as IPython does (not after an error)."""
    before, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run()
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    write_after_prints(
        f"CPU times: user {duration(user)}, sys: {duration(system)}, total: {duration(user + system)}\n"
        f"Wall time: {duration(wall)}"
    )


def time_it(statement):
    """`%timeit statement`: the mean and standard deviation of 7 runs of as many loops as take 0.2 s, as IPython."""
    if not statement:
        raise UsageError("%timeit is missing the statement to time.")
    timer = timeit.Timer(statement, globals=NAMESPACE)
    loops, _ = timer.autorange()
    per_loop = [total / loops for total in timer.repeat(7, loops)]
    mean = sum(per_loop) / len(per_loop)
    deviation = (sum((t - mean) ** 2 for t in per_loop) / len(per_loop)) ** 0.5
    print(f"{duration(mean)} ± {duration(deviation)} per loop (mean ± std. dev. of 7 runs, {loops:,} loops each)")


def duration(seconds):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def run_file(args):
    """`%run script.py args`: the script runs as `__main__` with those arguments, and its names join the session's."""
    words = shlex.split(args)
    if not words:
        raise UsageError("%run is missing the file to run.")
    argv = sys.argv
    sys.argv = words
    try:
        NAMESPACE.update(runpy.run_path(words[0], run_name="__main__"))
    finally:
        sys.argv = argv


builtins.__assistd_shell__ = shell_line
builtins.__assistd_magic__ = line_magic
builtins.__assistd_cell_magic__ = cell_magic


def write_after_prints(line):
    flush_streams()
    drain_fd_output()
    OUTPUT.write(line + "\n")


def user_traceback(error):
    """The traceback of the user's code: from its cell's frame on, without the driver's own frames (file
    `<string>`). An error before the cell ran (its syntax) has no frame of it: the error alone."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename != "<string>"]
    first = next((i for i, frame in enumerate(frames) if frame.filename.startswith("<cell ")), len(frames))
    frames = frames[first:]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)] if frames else []
    return "".join(lines + traceback.format_exception_only(type(error), error))


def show(*_args, **_kwargs):
    """pyplot.show() as a notebook's: every figure open (but those display() showed) is shown now, then closed, so
    `plot, show, plot, show` shows two images and a figure shown then closed is not lost."""
    plt = sys.modules["matplotlib.pyplot"]
    show_figures(plt, undisplayed(plt), print)
    plt.close("all")


def show_figure(figure, *_args, **_kwargs):
    """Figure.show() as a notebook's: display(figure)."""
    display(figure)


def figures():
    """Adds the PNG of every pyplot figure still open to IMAGES (but those display() showed), then closes them all.

    Saving can take long (millions of points), so it is interruptible like the cell: on the host's interrupt the
    figures saved so far are kept and the rest dropped, with a note in the output.
    """
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    before = len(IMAGES.pngs)
    numbers = []
    try:
        try:
            _cell["running"] = True
            numbers = undisplayed(plt)
            if _cell["interrupted"]:  # after `running`: an interrupt is either seen here or sent as a SIGINT
                raise KeyboardInterrupt
            show_figures(plt, numbers, note_after_cell)
        finally:
            _cell["running"] = False  # in the try: a SIGINT at this boundary is caught below, not in the loop
    except KeyboardInterrupt:
        saved = len(IMAGES.pngs) - before
        OUTPUT.write(f"\n[interrupted while saving figures: {saved} of {len(numbers)} figures returned]\n")
    except Exception as error:  # noqa: BLE001
        OUTPUT.write(user_traceback(error))
    finally:
        plt.close("all")


def undisplayed(plt):
    """The numbers of the pyplot figures open that display() has not shown in this cell."""
    return [number for number in plt.get_fignums() if not IMAGES.was_displayed(plt.figure(number))]


def show_figures(plt, numbers, note):
    """Adds the PNG of each figure of `numbers` to IMAGES as it is saved, so an interrupt keeps those done, and
    closes it. A figure with nothing drawn is shown as its text (image_saver): `plt.show(); plt.clf()` leaves one."""
    for number in numbers:
        figure = plt.figure(number)
        if image_saver(figure) is None:
            write_after_prints(repr(figure))
        elif IMAGES.room(note):
            IMAGES.add(figure_png(figure), f"figure {number}", note)
        else:
            break
        plt.close(figure)


def note_after_cell(note):
    OUTPUT.write(f"\n{note}\n")


def run_cell(request):
    OUTPUT.reset()
    IMAGES.reset()
    install_streams()
    outcome = "ok"
    signal.signal(signal.SIGINT, on_sigint)
    _cell["running"] = True
    try:
        try:
            if _cell["interrupted"]:  # interrupted before it started (after `running`, as in figures())
                raise KeyboardInterrupt
            run_code(request["code"])
        finally:
            _cell["running"] = False
            if os.getpid() != DRIVER_PID:
                os._exit(0)  # a forked child finishing the cell
    except KeyboardInterrupt as error:
        outcome = "interrupted"
        _cell["interrupted"] = False  # the interrupt stopped the code: the figures it drew are still saved
        report(error)
    except BaseException as error:  # noqa: BLE001 (SystemExit too: the session goes on)
        outcome = "error"
        report(error)
    flush_streams()
    kill_strays()
    drain_fd_output()
    figures()
    for png in IMAGES.pngs:
        send({"id": request["id"], "type": "image", "png": base64.b64encode(png).decode("ascii")})
    IMAGES.reset()  # neither the PNGs nor the figures shown are held until the next cell
    send({"id": request["id"], "type": "result", "outcome": outcome, "logs": OUTPUT.text()})


def report(error):
    """The cell's traceback, after what it printed (a UsageError's message alone, as IPython writes it)."""
    flush_streams()
    drain_fd_output()
    OUTPUT.write(f"UsageError: {error}\n" if isinstance(error, UsageError) else user_traceback(error))


# ── files in /mnt/data ───────────────────────────────────────────────────────


class FileError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def parts_of(name):
    parts = name.split("/")
    if not name or any(part in ("", ".", "..") or "\0" in part for part in parts):
        raise FileError("invalid_name", f"invalid file name {name!r}")
    return parts


def open_in_data(name, flags):
    """Opens /mnt/data/<name> without following a symlink at any component."""
    parts = parts_of(name)
    directory = os.open(DATA_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            except FileNotFoundError:
                raise FileError("not_found", f"{name}: no such file") from None
            except (NotADirectoryError, OSError) as error:
                raise FileError("not_regular", f"{name}: {part} is not a directory (symlinks are not followed)") from error
            os.close(directory)
            directory = inner
        try:
            return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644, dir_fd=directory)
        except FileNotFoundError:
            raise FileError("not_found", f"{name}: no such file") from None
        except OSError as error:
            if error.errno == 40:  # ELOOP: the name is a symlink
                raise FileError("not_regular", f"{name} is a symbolic link, not a regular file") from None
            if error.errno in (6, 21):  # ENXIO: a FIFO with no reader; EISDIR
                raise FileError("not_regular", f"{name} is not a regular file") from None
            raise FileError("io", f"{name}: {error.strerror}") from None
    finally:
        os.close(directory)


@contextlib.contextmanager
def data_file(name, flags):
    """/mnt/data/<name> open (open_in_data) if it is a regular file, closed afterwards; an OSError is a FileError."""
    fd = open_in_data(name, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileError("not_regular", f"{name} is not a regular file")
        os.set_blocking(fd, True)
        yield fd
    except OSError as error:
        raise FileError("io", f"{name}: {error.strerror}") from None
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


def write_file(request):
    name = request["name"]
    if "/" in name:
        raise FileError("invalid_name", f"invalid file name {name!r}: no '/' allowed")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if request.get("append") else os.O_TRUNC)
    with data_file(name, flags) as fd:
        view = memoryview(base64.b64decode(request["data"]))
        while view:
            view = view[os.write(fd, view):]
    send({"id": request["id"], "type": "ok"})


def remove_file(request):
    """Removes /mnt/data/<name> (a file placed in part, on the host's failure to place it whole)."""
    name = request["name"]
    if "/" in name:
        raise FileError("invalid_name", f"invalid file name {name!r}: no '/' allowed")
    try:
        os.unlink(os.path.join(DATA_DIR, name))
    except FileNotFoundError:
        pass
    except OSError as error:
        raise FileError("io", f"{name}: {error.strerror}") from None
    send({"id": request["id"], "type": "ok"})


def link_file(request):
    """Makes /mnt/data/<name> a symbolic link to <target>, a file beside it. A symbolic link there is replaced;
    anything else there stays, and is an error."""
    name, target = request["name"], request["target"]
    for each in (name, target):
        if "/" in each or each in ("", ".", ".."):
            raise FileError("invalid_name", f"invalid file name {each!r}")
    path = os.path.join(DATA_DIR, name)
    try:
        if os.path.islink(path):
            os.unlink(path)
        os.symlink(target, path)
    except FileExistsError:
        raise FileError("exists", f"{name} exists and is not a symbolic link") from None
    except OSError as error:
        raise FileError("io", f"{name}: {error.strerror}") from None
    send({"id": request["id"], "type": "ok"})


def read_file(request):
    name, limit = request["name"], request["max"]
    with data_file(name, os.O_RDONLY) as fd:
        size = os.fstat(fd).st_size
        if size > limit:
            raise FileError("too_large", f"{name} has {size:,} bytes, over the limit of {limit:,}")
        total = 0
        while True:
            chunk = os.read(fd, min(CHUNK_BYTES, limit + 1 - total))
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise FileError("too_large", f"{name} grew over the limit of {limit:,} bytes")
            send({"id": request["id"], "type": "chunk", "data": base64.b64encode(chunk).decode("ascii")})
    send({"id": request["id"], "type": "ok", "size": total})


def list_files(request):
    """The MAX_LIST most recently modified files (a file the cell just wrote is listed however many there are)."""
    scanned = [0]

    def walk(path, prefix, depth):
        try:
            entries = os.scandir(path)
        except OSError:
            return  # a directory the code made unreadable (chmod 0) is left out, not the end of the session
        with entries:
            for entry in entries:
                if scanned[0] >= MAX_LIST_SCAN:
                    return
                scanned[0] += 1
                name = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    if depth < MAX_LIST_DEPTH:
                        yield from walk(entry.path, name + "/", depth + 1)
                elif entry.is_file(follow_symlinks=False):
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    yield info.st_mtime_ns, name, info.st_size

    newest = heapq.nlargest(MAX_LIST, walk(DATA_DIR, "", 0))  # by mtime, ties by name
    files = [{"name": name, "size": size, "mtimeMs": mtime_ns / 1e6} for mtime_ns, name, size in newest]
    files.sort(key=lambda file: file["name"])  # replied by name, as ever
    send({"id": request["id"], "type": "ok", "files": files})


# ── the loop ─────────────────────────────────────────────────────────────────

HANDLERS = {
    "run": run_cell,
    "write": write_file,
    "read": read_file,
    "list": list_files,
    "remove": remove_file,
    "link": link_file,
}


def serve():
    requests = []
    threading.Thread(target=pump_fd_output, daemon=True).start()
    threading.Thread(target=read_requests, args=(requests,), daemon=True).start()
    while True:
        try:
            _has_request.acquire()
            request = requests.pop(0)
        except KeyboardInterrupt:
            continue
        try:
            HANDLERS[request["op"]](request)
        except FileError as error:
            send({"id": request["id"], "type": "error", "code": error.code, "message": str(error)})
        except KeyboardInterrupt:
            send({"id": request["id"], "type": "error", "code": "interrupted", "message": "interrupted"})


def preload():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.figure
    import matplotlib.pyplot

    matplotlib.pyplot.show = show
    matplotlib.figure.Figure.show = show_figure
    import numpy
    import pandas

    return f"python {sys.version.split()[0]}, numpy {numpy.__version__}, pandas {pandas.__version__}, matplotlib {matplotlib.__version__}"


def seed_font_cache():
    """Copies the font cache the host built (read-only here) into the writable MPLCONFIGDIR matplotlib requires."""
    source = CONFIG.get("fontCache")
    target = os.environ.get("MPLCONFIGDIR")
    if not source or not target:
        return
    os.makedirs(target, exist_ok=True)
    for name in os.listdir(source):
        if name.endswith(".json"):
            with open(os.path.join(source, name), "rb") as src, open(os.path.join(target, name), "wb") as dst:
                dst.write(src.read())


set_limits()
seed_font_cache()
send({"type": "ready", "detail": preload()})
serve()
