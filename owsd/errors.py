"""The command-line error policy: what a failure prints and which exit code it returns.

Every ``owsd`` subcommand (the scheme's, ``attack``, ``audit``, ``audit-compare``, ``bench``)
runs through :func:`run_command`:

* a **user error** (a bad argument, a missing, unreadable or malformed file, a request the
  data cannot satisfy) prints ONE line on stderr, ``owsd CMD: error: <what is wrong>``, and
  exits with :data:`EXIT_USAGE` (2).  User errors are :class:`UsageError`, the library's
  documented input errors (``ValueError`` and its subclasses: ``SpecError``, ``KeyFileError``,
  ``DataFormatError``, ``ArrayFileError``, ...) and ``OSError`` on a path;
* an **internal error** (a bug) prints one line naming the exception and the pointer
  ``run with -v for the traceback``, exits with :data:`EXIT_INTERNAL` (1); with ``-v`` the
  traceback follows;
* **Ctrl-C** exits with :data:`EXIT_INTERRUPTED` (130), saying ``interrupted; run the same
  command to resume`` where that is true (``run`` and ``audit`` with a fixed key: ``--key``,
  ``--seed`` or ``--scrambler``; the subcommand's ``resumable`` default, a bool or a
  predicate of the arguments), else ``interrupted``.

Argument errors found by argparse use the same one-line form (:class:`OneLineArgumentParser`).

Example:
    >>> import argparse, io, contextlib
    >>> def bad(a): raise UsageError("--epochs: must be at least 1, got 0")
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     code = run_command(bad, argparse.Namespace(command="run", verbose=0))
    >>> code, err.getvalue()
    (2, 'owsd run: error: --epochs: must be at least 1, got 0\\n')
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from typing import Callable, NoReturn

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
MAX_MESSAGE = 600  # characters of one error line


class UsageError(ValueError):
    """A command-line argument or input the command cannot use (exit code 2)."""


def one_line(text: str, *, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line (line breaks become ``; ``), at most ``limit`` characters."""
    parts = [" ".join(ln.split()) for ln in str(text).splitlines()]
    flat = "; ".join(p for p in parts if p)
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def describe_error(exc: BaseException) -> str:
    """The user-facing text of an exception (an ``OSError`` names its file and the problem)."""
    if isinstance(exc, OSError) and not isinstance(exc, UsageError) and exc.strerror:
        name = exc.filename if exc.filename is not None else ""
        reason = exc.strerror if exc.strerror[1:2].isupper() else exc.strerror[:1].lower() + exc.strerror[1:]  # ONNX
        text = f"{name}: {reason}" if name != "" else reason
        if exc.filename2 is not None:
            text += f" (-> {exc.filename2})"
        return one_line(text)
    text = str(exc)
    if isinstance(exc, KeyError) and exc.args:
        text = f"missing {exc.args[0]!r}"
    return one_line(text or type(exc).__name__)


def run_command(func: Callable[[argparse.Namespace], int], a: argparse.Namespace) -> int:
    """Run one subcommand under the policy; return its exit code."""
    prog = f"owsd {getattr(a, 'command', None) or ''}".rstrip()
    try:
        return int(func(a) or 0)
    except KeyboardInterrupt:
        r = getattr(a, "resumable", False)
        resumable = bool(r(a) if callable(r) else r)
        sys.stderr.write(f"\n{prog}: interrupted; run the same command to resume\n" if resumable
                         else f"\n{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # a library calling sys.exit: keep its code, one line
        if exc.code in (None, 0) or isinstance(exc.code, int):
            return int(exc.code or 0)
        sys.stderr.write(f"{prog}: error: {one_line(str(exc.code))}\n")
        return EXIT_USAGE
    except (ValueError, OSError) as exc:
        log.debug("user error", exc_info=True)
        sys.stderr.write(f"{prog}: error: {describe_error(exc)}\n")
        return EXIT_USAGE
    except MemoryError as exc:
        log.debug("out of memory", exc_info=True)
        sys.stderr.write(f"{prog}: error: out of memory ({describe_error(exc)}); use smaller inputs "
                         f"(run with -v for the traceback)\n")
        return EXIT_INTERNAL
    except Exception as exc:  # noqa: BLE001 - the policy's last resort
        return _internal(prog, exc, a)


def _internal(prog: str, exc: BaseException, a: argparse.Namespace) -> int:
    sys.stderr.write(f"{prog}: internal error: {type(exc).__name__}: {describe_error(exc)} "
                     f"(run with -v for the traceback; please report it)\n")
    if getattr(a, "verbose", 0):
        traceback.print_exception(exc, file=sys.stderr)
    return EXIT_INTERNAL


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage block) with exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")
        sys.exit(EXIT_USAGE)


def one_line_warnings(prog: str) -> Callable:
    """A ``warnings.showwarning`` replacement printing ``PROG: warning: MESSAGE`` on one line."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
        out = file or sys.stderr
        try:
            out.write(f"{prog}: warning: {one_line(str(message))}\n")
        except (OSError, ValueError):
            pass
    return show
