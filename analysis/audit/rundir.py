"""The run directory of an audit and its resume markers.

::

    OUT/audit.json                 the manifest: what is audited (spec, fingerprint; never the secret)
    OUT/utility/utility.json, done the scheme's utility, then its done marker
    OUT/attacks/<job>/status.json, done   a job's status (ok / n/a / error), then its done marker

Every file is written atomically (:mod:`owsd.io`: temp file + rename) and a ``done`` marker
last, so a folder with its marker is complete; a rerun skips it.  A run directory remembers
its kernel: :func:`check_run_dir` refuses one of another key, spec, dataset, cloud, budget or seed.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     finish_job(Path(d) / "attacks" / "a", {"status": "n/a", "reason": "no cloud"})
    ...     load_job(Path(d) / "attacks" / "a")["reason"], load_job(Path(d) / "attacks" / "b")
    ('no cloud', None)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Optional, Sequence


from analysis.audit.config import AuditConfig
from analysis.audit.errors import AuditError
from analysis.audit.plan import Job
from analysis.audit.target import AuditTarget
from owsd import __version__ as TOOLKIT_VERSION
from owsd import provenance
from owsd.cloud import Cloud
from owsd.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

RUN_FORMAT = "owsd-audit-run"
RUN_VERSION = 1
#: manifest fields that must match for a run directory to be resumed
SAME_KERNEL = ("target.fingerprint", "target.spec", "dataset", "cloud", "cloud_model", "budget", "seed",
               "utility_sizes")


def machine() -> dict:
    """The machine the audit runs on (recorded in the manifest): :func:`owsd.provenance.machine`."""
    return provenance.machine()


def cloud_model(cloud: Optional[Cloud]) -> Optional[dict]:
    """What identifies the cloud model itself in the manifest: its digest (a hash of the model's
    weights or file, its interface, input size and any resizing in front of it; see
    :attr:`owsd.cloud.Cloud.digest`), never its name alone."""
    if cloud is None:
        return None
    return {"name": cloud.name, "digest": cloud.digest, "input_size": list(cloud.input_size)}


def manifest(target: AuditTarget, cfg: AuditConfig, jobs: Sequence[Job], sizes: dict, *,
             cloud: Optional[Cloud] = None) -> dict:
    """``audit.json``: the target's public description, the data, cloud (and its digest), budget, seed and jobs."""
    m = {"format": RUN_FORMAT, "version": RUN_VERSION, "target": target.describe(),
         "dataset": {"name": str(cfg.dataset), "data_dir": str(cfg.data_dir) if cfg.data_dir else None,
                     **({"image_size": cfg.image_size} if cfg.image_size else {})},
         "cloud": getattr(cfg.cloud, "name", cfg.cloud), "cloud_model": cloud_model(cloud),
         "budget": cfg.budget, "seed": cfg.seed, "victim_sizes": sizes,
         **({"utility_sizes": list(cfg.utility_sizes)} if cfg.utility_sizes else {}),
         "jobs": [dataclasses.asdict(j) for j in jobs], "command": cfg.command, "machine": machine(),
         "versions": provenance.versions(),
         "toolkit_version": str(TOOLKIT_VERSION)}
    return json.loads(json.dumps(m, default=str))  # tuples -> lists, as read back


def open_run_dir(out: Path, manifest: dict, *, restart: bool = False) -> None:
    """Create (or resume) ``out`` for ``manifest``; ``restart`` discards a previous audit there first."""
    if restart and (out / "audit.json").exists():
        log.info("restart: removing the previous audit in %s", out)
        shutil.rmtree(out)
    check_run_dir(out, manifest)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "audit.json", manifest)


def check_run_dir(out: Path, manifest: dict) -> None:
    """Refuse ``out`` if it holds something else, or an audit of another kernel or setting."""
    path = out / "audit.json"
    if not path.exists():
        if out.exists() and any(out.iterdir()):
            raise AuditError(f"{out} exists and is not an audit run directory; choose another --out")
        return
    try:
        old = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as exc:
        raise AuditError(f"{path} is corrupt ({exc}); remove the folder or choose another --out") from None
    for k in SAME_KERNEL:
        a, b = old, manifest
        for part in k.split("."):
            a, b = (a or {}).get(part), (b or {}).get(part)
        if a != b:
            hint = (" (a --spec or --preset without --seed draws a fresh key each time: pass --key or --seed "
                    "to resume)" if k.startswith("target") else
                    " (another model file or weights, other --cloud-* settings, or an audit begun before the "
                    "toolkit recorded the model's digest: its cloud outputs cannot be reused)"
                    if k == "cloud_model" else "")
            raise AuditError(f"{out} holds an audit with another {k} ({a!r}, asked {b!r}); use another --out "
                             f"or pass --restart{hint}")


def job_dir(out: Path, job_id: str) -> Path:
    return out / "attacks" / job_id


def load_job(d: Path) -> Optional[dict]:
    """A finished job's status and result, or ``None`` if it is not done."""
    if not (d / "done").is_file():
        return None
    try:
        status = json.loads((d / "status.json").read_text())
        if status["status"] == "ok":
            status["result"] = json.loads((d / "result.json").read_text())
        return status
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        log.warning("%s: unreadable finished job (%s); it is rerun", d, exc)
        return None


def load_error(d: Path) -> Optional[dict]:
    """The status of a job that crashed last time (``status.json`` without its done marker), or ``None``."""
    if (d / "done").is_file() or not (d / "status.json").is_file():
        return None
    try:
        status = json.loads((d / "status.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return status if isinstance(status, dict) and status.get("status") == "error" else None


def write_status(d: Path, status: dict) -> None:
    """A job's ``status.json`` without its done marker (an error: the job is rerun next time)."""
    atomic_write_json(d / "status.json", status)


def mark_done(d: Path) -> None:
    """The ``done`` marker, written last."""
    atomic_write_text(d / "done", "done\n")


def finish_job(d: Path, status: dict) -> None:
    """A finished job's ``status.json``, then its done marker."""
    write_status(d, status)
    mark_done(d)


def utility_dir(out: Path) -> Path:
    return out / "utility"


def load_utility(out: Path) -> Optional[dict]:
    """The utility measured by a previous run of this audit, or ``None``."""
    d = utility_dir(out)
    if (d / "done").is_file():
        try:
            return json.loads((d / "utility.json").read_text())
        except (OSError, json.JSONDecodeError):
            log.warning("unreadable utility.json; measuring again")
    return None
