"""External executables (Fortran/C++ codes, LAMMPS, GROMACS, shell scripts) as scales.

:func:`external_app` turns a program into a scale app, ``app(x, *, seed, **params) ->
{"x": (1, d), <output>: (1, ...)}``, usable as ``Scale(app=...)``. One call runs the
program once, on one configuration:

1. a fresh work directory ``<workdir_root>/task-<seed>-<hash>`` is made (an old one of
   the same name, from an earlier attempt with the same seed and input, is removed first);
2. the input file is rendered there from a :class:`string.Template` (``$name`` fields)
   by :func:`render`: every float is written with ``repr(float(v))``, which reads back
   as exactly the same double, never as ``np.float64(...)``; a missing field, an unused
   parameter or a non-finite number raises :class:`InputError` before anything runs;
3. the program runs in that directory in its own session (process group), stdout and
   stderr going to ``stdout.txt`` and ``stderr.txt``; past ``timeout`` seconds the whole
   group gets SIGTERM, then SIGKILL after ``grace`` seconds (:class:`ExternalTimeout`);
   a non-zero exit raises :class:`ExternalError` with the last lines of stderr;
4. the outputs are read by :func:`parse_key_values` (``outputs=[keys]``) or by your own
   ``outputs=parse(workdir) -> dict``; a missing or NaN value raises :class:`OutputError`.

The shipped example program :data:`MULLER_BROWN` (POSIX sh + awk) computes the
Müller-Brown energy and gradient of the point in its input file::

    >>> import tempfile
    >>> import numpy as np
    >>> from apps.external import MULLER_BROWN, external_app
    >>> with tempfile.TemporaryDirectory() as root:
    ...     app = external_app([MULLER_BROWN, "input.txt", "output.txt"], name="muller_brown",
    ...                        template="x = $x0\\ny = $x1\\n", outputs=["energy", "gx", "gy"],
    ...                        workdir_root=root, timeout=10)
    ...     result = app(np.array([np.float64(-0.558224), 1.441726]), seed=0)
    >>> sorted(result), result["x"].tolist(), round(float(result["energy"][0]), 2)
    (['energy', 'gx', 'gy', 'x'], [[-0.558224, 1.441726]], -146.7)

Rendering on its own::

    >>> from apps.external import render
    >>> print(render("x = $x\\nwidth = $width", x=np.array([0.1, 1 / 3]), width=np.float64(0.5)))
    x = 0.1 0.3333333333333333
    width = 0.5
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shlex
import shutil
import signal
import string
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MULLER_BROWN",
    "ExternalError",
    "ExternalProgram",
    "ExternalTimeout",
    "InputError",
    "OutputError",
    "external_app",
    "format_value",
    "parse_key_values",
    "render",
]

logger = logging.getLogger(__name__)

MULLER_BROWN: Path = Path(__file__).resolve().parent / "data" / "muller_brown.sh"
"""The example program: ``muller_brown.sh [INPUT [OUTPUT]]`` reads ``x = ...`` and
``y = ...`` lines and writes ``x``, ``y`` (as read), ``energy``, ``gx``, ``gy`` as
``key = value`` lines with ``%.17g``."""

STDOUT = "stdout.txt"
STDERR = "stderr.txt"
LAUNCH = "launch.txt"  # the command line of an MPI task
TAIL_LINES = 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_FORTRAN_DOUBLE = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))[dD]([+-]?\d+)$")
_PROC = Path("/proc")
_POLL_SECONDS = 0.02


class InputError(ValueError):
    """The input file cannot be rendered: a missing field, an unused parameter, a
    non-finite number or a value of a type that has no exact text form."""


class OutputError(ValueError):
    """An output file is missing, or a value in it is missing, not a number or not finite."""


class ExternalError(RuntimeError):
    """The program could not start, exited non-zero or was killed by a signal."""

    def __init__(self, program: str, workdir: str, returncode: int | None, detail: str) -> None:
        super().__init__(program, workdir, returncode, detail)  # args: picklable as is
        self.program, self.workdir, self.returncode, self.detail = (
            program, workdir, returncode, detail)

    def __str__(self) -> str:
        if self.returncode is None:
            what = "could not start"
        elif self.returncode < 0:
            what = f"was killed by {_signal_name(-self.returncode)}"
        else:
            what = f"exited with code {self.returncode}"
        return f"'{self.program}' {what} (workdir {self.workdir}){self.detail}"


class ExternalTimeout(ExternalError):  # noqa: N818 - reads as what happened, like AppTimeout
    """The program ran past its timeout; its whole process group was killed."""

    def __init__(self, program: str, workdir: str, seconds: float, stopped_by: str) -> None:
        RuntimeError.__init__(self, program, workdir, seconds, stopped_by)
        self.program, self.workdir, self.seconds, self.stopped_by = (
            program, workdir, seconds, stopped_by)
        self.returncode, self.detail = None, ""

    def __str__(self) -> str:
        return (f"'{self.program}' ran past {self.seconds:g} s (killed with {self.stopped_by}; "
                f"workdir {self.workdir})")


def format_value(value: Any, name: str = "value") -> str:
    """The exact text of one template value.

    Floats (Python floats, numpy float16/32/64 scalars, array elements) are written with
    ``repr(float(v))``, the shortest text that reads back as the same double (``0.1``,
    ``1e-05``, ``-146.69951720967072``; a ``longdouble`` is first rounded to a double);
    integers as decimal digits; strings and paths as
    they are; 1-D sequences and arrays as their elements joined by one space, 2-D arrays
    as one such line per row.

    Raises:
        InputError: a NaN or infinite number, a bool (write the text the program expects,
            e.g. ``".true."``), a complex number, an array of more than two dimensions or
            any other type.
    """
    if isinstance(value, str | os.PathLike):
        return os.fspath(value)
    if isinstance(value, bool | np.bool_):
        raise InputError(f"{name}: a bool has no one text form; pass the text the program "
                         f"reads (e.g. '.true.', '1', 'yes'), got {value!r}")
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if not np.isfinite(number):
            raise InputError(f"{name} is not finite ({number!r}); the program would read "
                             "garbage or fail")
        return repr(number)
    if isinstance(value, np.ndarray | list | tuple):
        array = np.asarray(value)
        if array.dtype.kind not in "iuf" or array.ndim > 2:
            raise InputError(f"{name}: need a 1-D or 2-D array of real numbers, got dtype "
                             f"{array.dtype} and shape {array.shape}")
        if array.ndim == 2:
            return "\n".join(format_value(row, f"{name}[{i}]") for i, row in enumerate(array))
        return " ".join(format_value(item, f"{name}[{i}]")
                        for i, item in enumerate(array.reshape(-1).tolist()))
    raise InputError(f"{name}: cannot write a {type(value).__name__} into an input file "
                     "(use a number, an array of numbers or a string)")


def render(template: str, **fields: Any) -> str:
    """Fill a :class:`string.Template` (``$name`` or ``${name}``; ``$$`` is a literal
    ``$``) with ``fields``, each written by :func:`format_value`.

    Raises:
        InputError: the template is malformed, a field it names is not given, or a value
            cannot be written exactly (see :func:`format_value`).
    """
    parsed = _template(template)
    names = parsed.get_identifiers()
    missing = [name for name in names if name not in fields]
    if missing:
        raise InputError(f"template field(s) {', '.join(map(repr, missing))} not provided; "
                         f"given: {', '.join(sorted(fields)) or 'none'}")
    return parsed.substitute({name: format_value(fields[name], name) for name in names})


def _template(text: str) -> string.Template:
    if not isinstance(text, str):
        raise InputError(f"template must be a str, got {type(text).__name__}")
    parsed = string.Template(text)
    if not parsed.is_valid():
        bad = re.search(r"\$(?!\$|[_a-zA-Z]|\{[_a-zA-Z][_a-zA-Z0-9]*\})", text)
        where = f" at character {bad.start()}" if bad else ""
        raise InputError(f"template has a '$' that starts no field{where}; write $name, "
                         "${name} or $$ for a literal '$'")
    return parsed


def parse_key_values(path: str | os.PathLike, keys: Sequence[str]) -> dict[str, Any]:
    """Read ``keys`` from a ``key = value`` text file.

    Blank lines, lines starting with ``#`` and lines without ``=`` are skipped; keys not
    asked for are not checked. A value is one number (returned as a float) or several
    separated by whitespace (a 1-D float64 array); Fortran ``D`` exponents (``1.5D+00``)
    are read too.

    Raises:
        OutputError: the file does not exist, a key is missing or given twice, or a value
            is not a number or not finite (NaN, inf). The message names the file, the key,
            the line and the value.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise OutputError(f"{path}: output file not found") from None
    wanted = set(keys)
    found: dict[str, tuple[int, str]] = {}
    seen: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or "=" not in stripped:
            continue
        key, _, value = (part.strip() for part in stripped.partition("="))
        seen.append(key)
        if key in wanted:
            if key in found:
                raise OutputError(f"{path} line {number}: '{key}' given twice (first on line "
                                  f"{found[key][0]})")
            found[key] = (number, value)
    missing = [key for key in keys if key not in found]
    if missing:
        raise OutputError(f"{path}: missing {', '.join(map(repr, missing))} (found: "
                          f"{', '.join(dict.fromkeys(seen)) or 'no key = value lines'})")
    return {key: _number(path, key, *found[key]) for key in keys}


def _number(path: Path, key: str, line: int, text: str) -> float | np.ndarray:
    values = []
    for token in text.split():
        fortran = _FORTRAN_DOUBLE.match(token)
        try:
            value = float(f"{fortran[1]}e{fortran[2]}" if fortran else token)
        except ValueError:
            raise OutputError(f"{path} line {line}: '{key}' = {text!r} is not a number") from None
        if not np.isfinite(value):
            raise OutputError(f"{path} line {line}: '{key}' = {text!r} is not finite")
        values.append(value)
    if not values:
        raise OutputError(f"{path} line {line}: '{key}' has no value")
    return values[0] if len(values) == 1 else np.array(values, dtype=np.float64)


class ExternalProgram:
    """A scale app that runs an external program (made by :func:`external_app`).

    Picklable (module-level class, plain attributes), so HighThroughputExecutor
    workers can receive it."""

    def __init__(self, command: Sequence[str | os.PathLike], *, template: str,
                 outputs: Sequence[str] | Callable[[Path], Mapping[str, Any]],
                 input_file: str = "input.txt", output_file: str = "output.txt",
                 name: str | None = None, workdir_root: str | os.PathLike | None = None,
                 timeout: float | None = None, grace: float = 5.0,
                 env: Mapping[str, str] | None = None, keep_workdir: bool = True,
                 mpi: bool = False) -> None:
        if isinstance(command, str | os.PathLike) or not command:
            raise ValueError("command must be a non-empty sequence: [program, arg, ...]")
        self.command = [os.fspath(part) for part in command]
        if os.sep in self.command[0] and not os.path.isabs(self.command[0]):
            self.command[0] = os.path.abspath(self.command[0])  # it runs in the workdir
        self.name = name or Path(self.command[0]).name
        if not _NAME.match(self.name):
            raise ValueError(f"name must be letters, digits, '.', '_' or '-' (it names "
                             f"directories); got {self.name!r}")
        self.template = template
        self.fields = set(_template(template).get_identifiers())
        if callable(outputs):
            self.outputs: Sequence[str] | Callable[[Path], Mapping[str, Any]] = outputs
        else:
            if isinstance(outputs, str) or not outputs:
                raise ValueError("outputs must be a non-empty list of keys or a "
                                 "parse(workdir) -> dict function")
            self.outputs = list(outputs)
            if "x" in self.outputs:
                raise ValueError("'x' is the configuration, not an output key")
        for label, filename in (("input_file", input_file), ("output_file", output_file)):
            if Path(filename).name != filename or filename in (STDOUT, STDERR, LAUNCH):
                raise ValueError(f"{label} must be a plain file name other than {STDOUT} "
                                 f"and {STDERR}; got {filename!r}")
        self.input_file, self.output_file = input_file, output_file
        root = Path("artifacts") / self.name if workdir_root is None else Path(workdir_root)
        self.workdir_root = root.absolute()  # the caller's directory, not the worker's
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds or None; got {timeout}")
        if not grace >= 0:
            raise ValueError(f"grace must be >= 0 seconds; got {grace}")
        self.timeout, self.grace = timeout, float(grace)
        self.env = None if env is None else dict(env)
        self.keep_workdir = keep_workdir
        self.mpi = bool(mpi)

    def __repr__(self) -> str:
        return (f"ExternalProgram({self.command!r}, name={self.name!r}, "
                f"workdir_root={str(self.workdir_root)!r}, timeout={self.timeout}"
                f"{', mpi=True' if self.mpi else ''})")

    def __call__(self, x: np.ndarray, *, seed: int, **params: Any) -> dict[str, np.ndarray]:
        """Run the program once on the configuration ``x`` (shape (d,) or (1, d)).

        Template fields: ``x`` (the d numbers, space-separated), ``x0`` ... ``x<d-1>``,
        ``d``, ``seed``, ``workdir`` (absolute path) and every parameter in ``params``.

        Returns:
            Without an ``"x"`` from a custom parser: ``{"x": (1, d) the input, key: (1, ...)
            each output}``; with one, the parser's dict as it is.

        Raises:
            InputError, ExternalError, ExternalTimeout, OutputError: see the module.
        """
        row = np.asarray(x, dtype=np.float64)
        if row.ndim == 2 and row.shape[0] == 1:
            row = row[0]
        if row.ndim != 1 or row.size == 0:
            raise InputError(f"{self.name}: x must be one configuration, shape (d,) or (1, d); "
                             f"got {np.shape(x)}")
        if not np.isfinite(row).all():
            raise InputError(f"{self.name}: x is not finite: {row.tolist()}")
        fields = self._fields(row, seed, params)
        text = render(self.template, **fields)  # with a placeholder for $workdir
        digest = hashlib.sha256("\0".join([*self.command, text]).encode()).hexdigest()[:12]
        workdir = self.workdir_root / f"task-{int(seed)}-{digest}"
        if "workdir" in self.fields:
            text = render(self.template, **{**fields, "workdir": str(workdir)})
        if workdir.exists():  # an earlier attempt with this seed and input: start afresh
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        (workdir / self.input_file).write_text(text)
        self._execute(workdir)
        result = self._outputs(workdir, row)
        if not self.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        return result

    def _fields(self, row: np.ndarray, seed: int, params: dict[str, Any]) -> dict[str, Any]:
        builtin: dict[str, Any] = {"x": row, "d": row.size, "seed": int(seed),
                                   "workdir": "<workdir>"}
        builtin.update({f"x{i}": value for i, value in enumerate(row.tolist())})
        clash = sorted(set(params) & set(builtin))
        if clash:
            raise InputError(f"{self.name}: parameter(s) {', '.join(clash)} clash with the "
                             "fields the app sets (x, x0..., d, seed, workdir)")
        unused = sorted(set(params) - self.fields)
        if unused:
            raise InputError(f"{self.name}: parameter(s) {', '.join(map(repr, unused))} not "
                             f"used by the template (its fields: "
                             f"{', '.join(sorted(self.fields)) or 'none'})")
        return {**builtin, **params}

    def launch_command(self) -> list[str]:
        """The command line run: ``command``, behind ``$PARSL_MPI_PREFIX`` (the executor's
        MPI launcher with this task's ranks and nodes) when ``mpi``.

        Raises:
            ExternalError: ``mpi`` but no ``$PARSL_MPI_PREFIX`` (the task is not running on
                an MPI-mode executor).
        """
        if not self.mpi:
            return list(self.command)
        prefix = os.environ.get("PARSL_MPI_PREFIX", "").strip()
        if not prefix:
            raise ExternalError(self.name, "-", None,
                                ": mpi=True but $PARSL_MPI_PREFIX is not set; run the scale "
                                "on an MPI-mode executor (Scale(resources=Resources(ranks=N)))")
        return [*shlex.split(prefix), *self.command]

    def _execute(self, workdir: Path) -> None:
        env = None if self.env is None else {**os.environ, **self.env}
        command = self.launch_command()
        if self.mpi:
            (workdir / LAUNCH).write_text(shlex.join(command) + "\n")
        with open(workdir / STDOUT, "wb") as out, open(workdir / STDERR, "wb") as err:
            try:
                process = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL,
                                           stdout=out, stderr=err, env=env,
                                           start_new_session=True)
            except OSError as error:
                raise ExternalError(self.name, str(workdir), None, f": {error}") from None
            finished = False
            try:
                finished = _wait(process, self.timeout)
            finally:
                # a timeout, or an exception raised into this thread (Parsl's walltime,
                # Ctrl-C): the program and everything it started must not outlive the task
                if finished and _group_alive(process.pid):
                    logger.warning("%s exited leaving processes in its group; stopping them "
                                   "(workdir %s)", self.name, workdir)
                    _stop_group(process, self.grace)
                elif not finished:
                    stopped_by = _stop_group(process, self.grace)
        if not finished:
            assert self.timeout is not None
            raise ExternalTimeout(self.name, str(workdir), self.timeout, stopped_by)
        if process.returncode != 0:
            raise ExternalError(self.name, str(workdir), process.returncode, _tail(workdir))

    def _outputs(self, workdir: Path, row: np.ndarray) -> dict[str, np.ndarray]:
        if callable(self.outputs):
            parsed = dict(self.outputs(workdir))
        else:
            path = workdir / self.output_file
            if not path.exists():
                raise OutputError(f"'{self.name}' exited 0 but wrote no {self.output_file} "
                                  f"(workdir {workdir}){_tail(workdir)}")
            parsed = parse_key_values(path, self.outputs)
        if "x" in parsed:
            return {key: np.asarray(value) for key, value in parsed.items()}
        result = {"x": row.reshape(1, -1).copy()}
        result.update({key: np.asarray(value, dtype=np.float64)[None, ...]
                       for key, value in parsed.items()})
        return result


def external_app(command: Sequence[str | os.PathLike], *, template: str,
                 outputs: Sequence[str] | Callable[[Path], Mapping[str, Any]],
                 input_file: str = "input.txt", output_file: str = "output.txt",
                 name: str | None = None, workdir_root: str | os.PathLike | None = None,
                 timeout: float | None = None, grace: float = 5.0,
                 env: Mapping[str, str] | None = None,
                 keep_workdir: bool = True, mpi: bool = False) -> ExternalProgram:
    """A scale app that runs ``command`` once per task on one configuration.

    Args:
        command: ``[program, arg, ...]``, run with the task's work directory as current
            directory (so ``"input.txt"`` in the arguments is the rendered input). A
            relative program path containing ``/`` is made absolute now, against the
            current directory of this call; a bare name is looked up on ``PATH``.
        template: the input file as a :class:`string.Template` (see :func:`render` and
            :meth:`ExternalProgram.__call__` for the fields).
        outputs: keys read from ``output_file`` by :func:`parse_key_values`, or
            ``parse(workdir: Path) -> dict`` returning the outputs (then one row each,
            for the input configuration) or a full result with ``"x"`` (e.g. frames).
        input_file, output_file: file names inside the work directory.
        name: names the program in errors and the default ``workdir_root`` (default: the
            program's file name).
        workdir_root: where the ``task-<seed>-<hash>`` work directories go (default
            ``artifacts/<name>``). A relative root is resolved now, against the current
            directory of this call (where the campaign script is loaded), so workers on
            a shared file system write to the same place.
        timeout: seconds the program may run before its process group gets SIGTERM
            (None: no limit). Keep it below ``Scale(timeout=...)``, which the engine
            enforces from outside and reports as Parsl's ``AppTimeout``.
        grace: seconds between SIGTERM and SIGKILL.
        env: variables added to (or replacing) the inherited environment.
        keep_workdir: keep the work directory after success (always kept on failure).
        mpi: launch the program through ``$PARSL_MPI_PREFIX``, which Parsl's MPI mode sets
            per task (e.g. ``mpiexec -n 2 -ppn 1 -hosts ...`` or ``srun --ntasks 8 ...``)
            from the scale's ``Resources(ranks=..., nodes=...)``; the command line run is
            written to ``launch.txt`` in the work directory.

    Raises:
        ValueError: bad arguments (an :class:`InputError` for a malformed template).
    """
    return ExternalProgram(command, template=template, outputs=outputs, input_file=input_file,
                           output_file=output_file, name=name, workdir_root=workdir_root,
                           timeout=timeout, grace=grace, env=env, keep_workdir=keep_workdir,
                           mpi=mpi)


def _wait(process: subprocess.Popen, timeout: float | None) -> bool:
    """Wait for ``process``; False if ``timeout`` passed first. Waits in short slices:
    a plain ``wait()`` blocks in C, where an exception raised into this thread (Parsl's
    walltime) would not arrive until the program ends."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = 1.0 if deadline is None else deadline - time.monotonic()
        if left <= 0:
            return process.poll() is not None
        try:
            process.wait(timeout=min(left, 1.0))
            return True
        except subprocess.TimeoutExpired:
            continue


def _stop_group(process: subprocess.Popen, grace: float) -> str:
    """SIGTERM the process group led by ``process`` (its own session), SIGKILL what is
    left after ``grace`` seconds; returns the signal that ended it."""
    group = process.pid  # start_new_session: the leader's pid is the group's id
    _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while True:
        process.poll()  # reap the leader: an unreaped zombie still counts as a member
        if process.returncode is not None and not _group_alive(group):
            return "SIGTERM"
        if time.monotonic() >= deadline:
            break
        time.sleep(_POLL_SECONDS)
    _signal_group(group, signal.SIGKILL)
    # kill() returns before the processes are gone: wait until they are
    deadline = time.monotonic() + max(grace, 1.0)
    while True:
        process.poll()
        if process.returncode is not None and not _group_alive(group):
            break
        if time.monotonic() >= deadline:  # stuck in the kernel (D state): nothing more to do
            logger.warning("process group %d still has members after SIGKILL", group)
            break
        time.sleep(_POLL_SECONDS)
    return "SIGKILL"


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def _group_alive(group: int) -> bool:
    """Whether any process of ``group`` is still running (zombies do not count: an
    init that does not reap them must not make a stopped group look alive)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False  # the common case, without reading /proc
    except PermissionError:
        pass
    if _PROC.is_dir():
        for stat in _PROC.glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2:].split()  # state ppid pgrp ...
            if fields[0] not in ("Z", "X") and int(fields[2]) == group:
                return True
        return False
    return True


def _tail(workdir: Path) -> str:
    """The last lines of the program's stderr (or of stdout, if stderr is empty)."""
    for stream, filename in (("stderr", STDERR), ("stdout", STDOUT)):
        try:
            lines = (workdir / filename).read_text(errors="replace").splitlines()
        except OSError:
            continue
        lines = [line for line in lines if line.strip()]
        if lines:
            shown = "\n  ".join(line[:500] for line in lines[-TAIL_LINES:])
            return f"; last lines of {stream}:\n  {shown}"
    return "; stdout and stderr were empty"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
