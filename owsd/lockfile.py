"""A lock file that names its holder and is taken over when the holder is gone.

:class:`PidLock` creates its file with ``O_CREAT | O_EXCL`` and writes JSON into it: the
holder's PID, host, process start tick (so a reused PID is not mistaken for the holder),
start time and what it is doing.  A lock is *stale* when its holder is dead (same host: the
PID is gone, a zombie, or now another process) or when it is older than ``stale_after``
seconds; a stale lock is taken over with a warning (a ``WARNING`` log line).  A waiter
says what it waits for (holder, age, file) when it starts waiting and every
``report_every`` seconds, so no command ever waits in silence.  The check-and-take-over step
runs under a short ``flock`` on a side file, so two waiters never both take the lock.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with PidLock(Path(d) / "lock", what="demo") as lk:
    ...         holder = read_holder(lk.path)
    >>> holder["pid"] == os.getpid(), holder["what"]
    (True, 'demo')
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Optional

try:  # POSIX; elsewhere the take-over step runs without the side lock
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: an empty or unreadable lock younger than this is assumed to be being written right now
WRITE_GRACE_S = 10.0
#: largest lock file read (a lock holds a few hundred bytes)
MAX_LOCK_BYTES = 64 * 1024


class LockTimeout(TimeoutError):
    """Waited longer than the caller allowed for a live holder."""


def _proc_start(pid: int) -> Optional[int]:
    """Start time of ``pid`` in clock ticks since boot (Linux ``/proc``), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            rest = fh.read().rsplit(b")", 1)[1].split()
        return int(rest[19])
    except (OSError, IndexError, ValueError):
        return None


def _proc_state(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError, UnicodeDecodeError):
        return None


def pid_alive(pid: int, proc_start: Optional[int] = None) -> bool:
    """True when process ``pid`` runs (not a zombie) and, if given, started at ``proc_start``."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    except OSError:
        return False
    if _proc_state(pid) in ("Z", "X"):
        return False
    now = _proc_start(pid)
    return not (proc_start is not None and now is not None and now != proc_start)


def read_holder(path: Path) -> Optional[dict]:
    """The holder record of lock file ``path`` (None if absent, empty or not a record)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_LOCK_BYTES + 1)
    except (FileNotFoundError, IsADirectoryError):
        return None
    except OSError:
        return None
    if len(raw) > MAX_LOCK_BYTES:
        return None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def describe(holder: Optional[dict], *, now: Optional[float] = None) -> str:
    """One phrase naming a holder: ``PID 123 on host (started 12:00:01, 40 s ago): building x``."""
    if not holder:
        return "an unidentified holder (empty or unreadable lock)"
    now = time.time() if now is None else now
    started = holder.get("started")
    when = ""
    if isinstance(started, (int, float)):
        when = f" (started {time.strftime('%H:%M:%S', time.localtime(started))}, {max(0.0, now - started):.0f} s ago)"
    return f"PID {holder.get('pid')} on {holder.get('host')}{when}: {holder.get('what', '?')}"


class PidLock:
    """An exclusive lock file naming its holder; stale locks are taken over with a warning.

    Args:
        path: the lock file.
        what: what the holder does (shown to waiters).
        stale_after: a lock older than this many seconds is stale even if its holder lives.
        timeout: give up waiting after this many seconds (:class:`LockTimeout`); None waits
            until the holder releases, dies or the lock turns stale.
        report_every: seconds between the waiter's progress lines.
        on_takeover: called with the stale holder's record (None if unreadable) after a take-over.
    """

    def __init__(self, path: Path | str, *, what: str, stale_after: float = 1800.0,
                 timeout: Optional[float] = None, report_every: float = 30.0, poll: float = 0.25,
                 on_takeover: Optional[Callable[[Optional[dict]], None]] = None) -> None:
        self.path = Path(path)
        self.what, self.stale_after, self.timeout = what, float(stale_after), timeout
        self.report_every, self.poll, self.on_takeover = report_every, poll, on_takeover
        self.took_over: Optional[dict] = None
        self.waited_s = 0.0
        self._token: Optional[str] = None

    # --- staleness ------------------------------------------------------------------
    def stale_reason(self, holder: Optional[dict], *, now: Optional[float] = None) -> Optional[str]:
        """Why the lock held by ``holder`` is stale, or None while it is live."""
        now = time.time() if now is None else now
        if holder is None:
            try:
                age = now - self.path.stat().st_mtime
            except OSError:
                return None  # vanished: not ours to take over, just retry
            return f"empty or unreadable for {age:.0f} s" if age > WRITE_GRACE_S else None
        started = holder.get("started")
        if isinstance(started, (int, float)) and now - started > self.stale_after:
            return f"older than {self.stale_after:.0f} s"
        pid, start = holder.get("pid"), holder.get("proc_start")
        if holder.get("host") == socket.gethostname() and not pid_alive(
                pid, start if isinstance(start, int) else None):
            return f"its holder (PID {pid}) is no longer running"
        return None

    # --- acquire / release ----------------------------------------------------------
    def _record(self) -> dict:
        self._token = f"{os.getpid()}-{time.time_ns()}-{os.urandom(4).hex()}"
        return {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": _proc_start(os.getpid()),
                "started": time.time(), "what": self.what, "argv": " ".join(sys.argv)[:300],
                "token": self._token}

    def _try_once(self) -> tuple[bool, Optional[dict]]:
        """One attempt under the side lock: (acquired, live holder's record)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        guard = os.open(str(self.path) + ".guard", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(guard, fcntl.LOCK_EX)
            for _ in range(2):
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    holder = read_holder(self.path)
                    reason = self.stale_reason(holder)
                    if reason is None:
                        return False, holder
                    msg = (f"taking over the stale lock {self.path} ({reason}; it was held by "
                           f"{describe(holder)})")
                    log.warning("%s", msg)
                    self.path.unlink(missing_ok=True)
                    self.took_over = holder or {}
                    continue
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(self._record(), fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                return True, None
            return False, read_holder(self.path)
        finally:
            os.close(guard)

    def acquire(self) -> "PidLock":
        """Take the lock, waiting (and saying so) while a live holder has it."""
        t0 = last_report = time.monotonic()
        first = True
        while True:
            ok, holder = self._try_once()
            if ok:
                self.waited_s = time.monotonic() - t0
                if self.took_over is not None and self.on_takeover is not None:
                    self.on_takeover(self.took_over)
                return self
            now = time.monotonic()
            if first or now - last_report >= self.report_every:
                log.warning("waiting for %s, held by %s (lock %s; taken over if that process dies or after "
                            "%.0f s)", self.what, describe(holder), self.path, self.stale_after)
                first, last_report = False, now
            if self.timeout is not None and now - t0 > self.timeout:
                raise LockTimeout(f"{self.path}: still held by {describe(holder)} after {now - t0:.0f} s")
            time.sleep(self.poll)

    def release(self) -> None:
        """Remove the lock if it is still ours (a take-over by another process is left alone)."""
        guard = os.open(str(self.path) + ".guard", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(guard, fcntl.LOCK_EX)
            holder = read_holder(self.path)
            if holder is not None and holder.get("token") == self._token:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(guard)
        self._token = None

    def __enter__(self) -> "PidLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
