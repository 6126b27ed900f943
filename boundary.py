"""The boundary between a user and the kernels: checks, memory, output paths, atomic writes.

Numba kernels do not check bounds and NumPy does not refuse NaN, so every value that comes
from outside (a flag, a file, an array handed to a public function) is checked here before
any kernel sees it. A failed check raises ValueError in the user's words: what was wrong and
what is accepted. Each command line (`run_cli`) turns it into one line on stderr and exit
status 2, never a traceback; files are only ever replaced whole (`atomic_write`), so a failure
cannot leave a half-written or corrupted one behind.
"""
import argparse
import fcntl
import json
import math
import numbers
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager

import numpy as np

MEMORY_FRACTION = 0.8  # refuse work whose estimated arrays exceed this share of free memory
MAX_JSON_DEPTH = 64    # nesting of [ and { in a JSON file we read: ours reach 10; json.loads
                       # itself recurses, and ~1000 levels end in RecursionError


# ------------------------------------------------------------------------------------------
# Numbers and arrays
# ------------------------------------------------------------------------------------------
def check_int(name, value, low, high=None):
    """value, if it is an integer (not a bool) in [low, high]; else ValueError naming `name`."""
    accepted = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
            or value < low or (high is not None and value > high)):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return int(value)


def check_float(name, value, low, high, low_open=False, high_open=False):
    """value as a float, if it is a finite real number in the interval; else ValueError.

    The interval is [low, high], or open at an end where low_open / high_open; NaN and ±inf are
    refused whatever the interval."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    x = float(value) if ok else math.nan
    if not (ok and math.isfinite(x) and (x > low if low_open else x >= low)
            and (x < high if high_open else x <= high)):
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return x


def check_int_array(name, a, shape, low, high):
    """a as an int64 array of exactly `shape` (None: any length) with values in [low, high)."""
    a = np.asarray(a)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be an array of integers, got dtype {a.dtype}")
    check_shape(name, a, shape)
    if a.size and (a.min() < low or a.max() >= high):
        raise ValueError(f"{name} must lie in [{low}, {high}), got values from {a.min()} "
                         f"to {a.max()}")
    return a.astype(np.int64, copy=False)


def check_real_array(name, a, shape):
    """a as a float64 array of `shape` (None: any length) whose entries are all finite."""
    a = np.asarray(a)
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.floating)
                               or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must be an array of numbers, got dtype {a.dtype}")
    check_shape(name, a, shape)
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has {a.size - int(np.isfinite(a).sum())} NaN or infinite "
                         "entries; all must be finite")
    return a


def check_shape(name, a, shape):
    """ValueError unless a.shape matches `shape`, whose None entries match any length."""
    if a.ndim != len(shape) or any(s is not None and n != s for n, s in zip(a.shape, shape)):
        wanted = "(" + ", ".join("any" if s is None else str(s) for s in shape) + (
            ",)" if len(shape) == 1 else ")")
        raise ValueError(f"{name} must have shape {wanted}, got {a.shape}")


# ------------------------------------------------------------------------------------------
# JSON read from files: nesting bounded before parsing, structure checked against a spec
# ------------------------------------------------------------------------------------------
JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')   # a whole string, or a bracket


def parse_json(text):
    """The value of JSON `text`; ValueError (for the caller to prefix with the file) if it is
    not JSON or nests deeper than MAX_JSON_DEPTH. The depth is counted first (strings
    skipped), so that json.loads, which recurses once per level, never meets a RecursionError."""
    depth = 0
    for token in JSON_TOKEN.finditer(text):
        bracket = token.group()[0]
        depth += (bracket in "[{") - (bracket in "]}")
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"its nesting is deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except ValueError as e:   # json.JSONDecodeError is a ValueError
        raise ValueError(f"not valid JSON ({e})") from None


def check_json(value, spec, where):
    """ValueError naming the key path `where` unless value matches spec, which reads:

    a dict {key: spec}       an object with at least these keys ("key?": optional), each
                             matching its spec; other keys are allowed (nobody reads them);
    {"*": spec}              a non-empty object whose every value matches spec;
    [spec]                   a non-empty list whose every item matches spec;
    a tuple (spec, ...)      a list of exactly that many items, matching position by position;
    a frozenset of strings   one of these strings;
    "number", "integer", "string", "boolean", "strings" (a list of strings, maybe empty),
    "any"; a trailing "?" ("number?") also accepts null. Numbers must be finite.
    "number or undefined"    a finite number, or {"undefined": "why"}: a measure that has no
                             value on this data, with its reason (a null would not say which
                             of "undefined" and "missing" it is);
    "number or record"       that, or {"not measured": "why"} (a measure not taken by design)."""
    if isinstance(spec, str) and spec.endswith("?"):
        if value is not None:
            check_json(value, spec[:-1], where)
    elif isinstance(spec, dict) and "*" in spec:
        json_type(isinstance(value, dict) and value, where, "a non-empty object", value)
        for key, item in value.items():
            check_json(item, spec["*"], f"{where}.{key}")
    elif isinstance(spec, dict):
        json_type(isinstance(value, dict), where, "an object", value)
        for key, item_spec in spec.items():
            name = key.rstrip("?")
            if name in value:
                check_json(value[name], item_spec, f"{where}.{name}")
            elif not key.endswith("?"):
                raise ValueError(f"key {where}.{name} is missing")
    elif isinstance(spec, list):
        json_type(isinstance(value, list) and value, where, "a non-empty list", value)
        for i, item in enumerate(value):
            check_json(item, spec[0], f"{where}[{i}]")
    elif isinstance(spec, frozenset):
        json_type(isinstance(value, str) and value in spec, where,
                  ("one of " if len(spec) > 1 else "") + ", ".join(map(repr, sorted(spec))), value)
    elif isinstance(spec, tuple):
        json_type(isinstance(value, list) and len(value) == len(spec), where,
                  f"a list of {len(spec)} items", value)
        for i, (item, item_spec) in enumerate(zip(value, spec)):
            check_json(item, item_spec, f"{where}[{i}]")
    else:
        json_type(JSON_LEAVES[spec](value), where, JSON_LEAF_WORDS[spec], value)


def finite_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def undefined_record(v, kinds=("undefined",)):
    """{"undefined": "why"}: a measure with no value on this data, and its reason (kinds:
    the record's accepted keys; "not measured": a measure that is not taken by design)."""
    return (isinstance(v, dict) and len(v) == 1 and next(iter(v)) in kinds
            and isinstance(next(iter(v.values())), str))


JSON_LEAVES = {
    "number": finite_number,
    "number or undefined": lambda v: finite_number(v) or undefined_record(v),
    "number or record": lambda v: finite_number(v) or undefined_record(
        v, ("undefined", "not measured")),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "strings": lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
    "any": lambda v: True}
JSON_LEAF_WORDS = {"number": "a finite number",
                   "number or undefined": 'a finite number or {"undefined": "why"}',
                   "number or record": 'a finite number, {"undefined": "why"} or '
                                       '{"not measured": "why"}',
                   "integer": "an integer", "string": "a string",
                   "boolean": "true or false", "strings": "a list of strings", "any": "anything"}


def json_type(ok, where, wanted, value):
    """ValueError 'key where must be wanted, got …' unless ok."""
    if not ok:
        got = {dict: "an object", list: "a list"}.get(type(value))
        got = got if got is None or value else f"an empty {got.split()[-1]}"
        got = "null" if value is None else got   # JSON's word, not Python's None
        raise ValueError(f"key {where} must be {wanted}, got {got or repr(value)[:40]}")


# ------------------------------------------------------------------------------------------
# Memory: estimated before allocating, compared with what the machine has free
# ------------------------------------------------------------------------------------------
def available_memory():
    """Bytes of memory available to a new allocation: MemAvailable of /proc/meminfo (Linux),
    else the free physical pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def check_memory(nbytes, what):
    """ValueError if `what` needs more than MEMORY_FRACTION of the available memory, so that a
    size that cannot fit is refused in seconds instead of failing after minutes of work."""
    free = available_memory()
    if nbytes > MEMORY_FRACTION * free:
        raise ValueError(f"{what} needs about {gigabytes(nbytes)} of memory, more than "
                         f"{MEMORY_FRACTION:.0%} of the {gigabytes(free)} this machine has "
                         "available; choose a smaller size")


def gigabytes(nbytes):
    return f"{nbytes / 2 ** 30:.3g} GiB"


# ------------------------------------------------------------------------------------------
# Output paths and atomic writes
# ------------------------------------------------------------------------------------------
def prepare_output_file(path, flag):
    """Make sure `path` can be written: its folder exists (created if missing) and accepts a
    new file; `path` itself is not a folder. ValueError naming `flag` otherwise. Called before
    long work starts, so an unwritable path is refused at once, not after the work."""
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path} is a folder; give a file path")
    prepare_output_folder(os.path.dirname(os.path.abspath(path)), flag, shown=path)


def prepare_output_folder(folder, flag, shown=None):
    """Make sure `folder` exists (created if missing) and accepts new files; ValueError else."""
    check_output_folder(folder, flag, shown)
    try:
        os.makedirs(folder, exist_ok=True)
        probe_write(folder)
    except OSError as err:
        raise ValueError(f"{flag} {shown or folder}: cannot write in {folder} "
                         f"({err.strerror or err})") from None


def check_output_folder(folder, flag, shown=None):
    """ValueError unless `folder` could be made (if missing) and written, checked without
    creating anything: its nearest existing ancestor must be a folder that accepts files."""
    shown = folder if shown is None else shown
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{flag} {shown}: {existing} is a file, not a folder")
    try:
        probe_write(existing)
    except OSError as err:
        raise ValueError(f"{flag} {shown}: cannot write in {folder} "
                         f"({err.strerror or err})") from None


def probe_write(folder):
    """OSError unless a file can be created in folder (the file is removed at once)."""
    fd, probe = tempfile.mkstemp(dir=folder, prefix=".tmp-write-test-")
    os.close(fd)
    os.unlink(probe)


def write_files_together(folder, write_all):
    """Call write_all(stage) to write files into a fresh staging folder, then move them all
    into `folder` (made if missing), but only once every one was written and none of their
    names is a folder in `folder`: a failure leaves `folder` as it was (or absent). The
    staging folder sits in `folder`'s nearest existing ancestor, on the same file system, so
    each move is a rename; it is removed whatever happens. Returns write_all's result."""
    existing = os.path.abspath(folder)
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    stage = tempfile.mkdtemp(dir=existing, prefix=".staging-")
    try:
        result = write_all(stage)
        names = sorted(os.listdir(stage))
        blocked = [n for n in names if os.path.isdir(os.path.join(folder, n))]
        if blocked:
            raise ValueError(f"cannot replace {os.path.join(folder, blocked[0])}: it is a "
                             f"folder; nothing was written to {folder}")
        os.makedirs(folder, exist_ok=True)
        for name in names:
            os.replace(os.path.join(stage, name), os.path.join(folder, name))
        return result
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextmanager
def one_writer(path, flag):
    """Hold `path` (a file or a folder to be written) for the block's duration: a second
    command writing the same output meanwhile is refused at once, naming it. The lock is an
    flock on `path`.lock, which the OS releases when the process ends, however it ends, so a
    crash leaves no lock behind; the file itself is removed on the way out."""
    lock_path = os.path.abspath(path).rstrip(os.sep) + ".lock"
    try:
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as err:
        raise ValueError(f"{flag} {path}: cannot write beside it ({err.strerror or err})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ValueError(f"{flag} {path} is being written by another command right now; wait "
                         f"for it to finish or choose another {flag}") from None
    try:
        yield
    finally:
        try:
            os.unlink(lock_path)
        except OSError:
            pass   # already gone (its folder replaced): the flock is released all the same
        os.close(fd)


def atomic_write(path, write):
    """Call write(file) on a temp file beside `path`, then rename it over `path`: a reader
    (or a crash) never sees a half-written file, and the old file survives any failure. A
    file system refusal is a ValueError naming `path`, never the temp file."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    except OSError as err:
        raise ValueError(f"cannot write {path} ({err.strerror or err})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException as err:
        os.unlink(tmp)
        if isinstance(err, OSError):
            raise ValueError(f"cannot write {path} ({err.strerror or err})") from None
        raise


def check_writable_file(path, flag):
    """ValueError naming `flag` and `path` unless `path` can be replaced by atomic_write: it is
    not a folder, and its folder accepts new files. Checked before work whose outputs must be
    written together, so that a later file cannot fail after an earlier one was replaced."""
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path} is a folder; give a file path")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        probe_write(folder)
    except OSError as err:
        raise ValueError(f"{flag} {path}: cannot write in {folder} ({err.strerror or err})") from None


def new_figure(rows=1, columns=1, width=5.0, height=4.0, **kwargs):
    """A matplotlib figure and its (rows, columns) axes on the Agg backend (no display needed).
    Imported here so that modules which only compute never load matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False,
                        layout="constrained", **kwargs)


def focus_on_plateau(ax, curve):
    """Raise the y axis's floor to the curve's last value minus 6 × (its rise after its peak
    + 1), so that the approach to the plateau (what tells runs apart) is not squashed by the
    first updates' low returns."""
    ax.set_ylim(bottom=max(ax.get_ylim()[0], curve[-1] - 6 * (curve.max() - curve[-1] + 1)))


def save_png(fig, path, dpi=110):
    """Write the figure as a PNG, atomically, and close it."""
    import matplotlib.pyplot as plt
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    finally:
        plt.close(fig)


# ------------------------------------------------------------------------------------------
# Command lines
# ------------------------------------------------------------------------------------------
class OneLineErrorParser(argparse.ArgumentParser):
    """argparse whose usage errors, like our ValueErrors, are one line on stderr (exit 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def run_cli(prog, command):
    """Run command(); bad input (ValueError), a file system refusal (OSError) or an allocation
    that failed after all (MemoryError) become one line on stderr and exit status 2."""
    try:
        command()
    except (ValueError, OSError, MemoryError) as err:
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; files already written are intact", file=sys.stderr)
        return 130
    return 0


def one_line(err):
    return " ".join(str(err).split()) or type(err).__name__


def to_builtin(x):
    """x with NumPy arrays and scalars turned into lists and numbers (JSON-ready); NaN and
    ±inf become None, which JSON can hold."""
    if isinstance(x, dict):
        return {str(k): to_builtin(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_builtin(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_builtin(x.tolist())
    if isinstance(x, (np.generic, float)):
        x = x.item() if isinstance(x, np.generic) else x
        return None if isinstance(x, float) and not np.isfinite(x) else x
    return x
