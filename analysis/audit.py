"""The audit: score one scrambling kernel against every registered adversary.

:func:`run_audit` takes an :class:`AuditTarget` (an OWSD key, a spec or preset with a fresh
key, or *any* callable scrambler: images in, scrambled images out) and runs every attack of
:func:`attacks.registry.available_attacks` under each configuration it supports at the
budget (:func:`plan_jobs`), on one victim deployment, then measures the scheme's utility
and writes a run directory::

    OUT/audit.json                 what is audited (spec, fingerprint; never the secret)
    OUT/utility/utility.json       the scheme's utility numbers (+ done marker)
    OUT/attacks/<job>/result.json  per attack: metrics, chance, CI, p, cost, seed, threat model
    OUT/attacks/<job>/per_sample.csv, raw.npz, grid.png, roc.png, status.json, done
    OUT/figures/*.png              key-recovery curves, attacker advantage, privacy-utility
    OUT/report.json, report.html   the report (source of truth) and its one-page view

Each attack's folder is written atomically and marked ``done`` last; an interrupted audit
rerun with the same ``--out`` skips what is done.  Attacks whose requirements the target
does not meet are recorded as ``n/a`` with the reason.

Example:
    >>> import tempfile, warnings
    >>> target = AuditTarget.from_preset("linear", seed=0)
    >>> with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     rep = run_audit(target, AuditConfig(out=d, only=("key-known-plaintext",), utility=False,
    ...                                         verbose=False))
    >>> rep["attacks"][0]["verdict"]
    'fail'
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import platform
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from analysis import report as _report
from analysis import verdicts as _verdicts
from analysis.figures import advantage_plot, attack_figures, key_recovery_plot, privacy_utility_plot
from analysis.utility import UTILITY_BUDGETS, measure_utility  # noqa: F401  (measure_utility: re-exported)
from owsd.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

RUN_FORMAT = "owsd-audit-run"
BUDGETS = ("smoke", "standard", "full")

#: threat-model sweeps: a parameter an attack accepts -> fractions of its budget value.
#: Each fraction adds a job (a point of the key-recovery curve).
SWEEPS: dict[str, dict[str, tuple[float, ...]]] = {
    "smoke": {},
    "standard": {"n_pairs": (0.25,)},
    "full": {"n_pairs": (0.0625, 0.25), "n_queries": (0.25,)},
}


class AuditError(ValueError):
    """The audit cannot run as asked (bad target, data, or an incompatible run directory)."""


# --- what is audited --------------------------------------------------------------------
@dataclass
class AuditTarget:
    """The kernel under audit: an OWSD key, or any callable scrambler.

    Build it with :meth:`from_key_file`, :meth:`from_spec`, :meth:`from_preset`,
    :meth:`from_key` or :meth:`from_callable`.  Only the public description
    (:meth:`describe`: spec, fingerprint) is ever written by the audit.
    """

    kind: str
    name: str
    key_source: str
    key: Any = field(default=None, repr=False)
    scrambler: Optional[Callable] = field(default=None, repr=False)

    # -- constructors --
    @classmethod
    def from_key(cls, key, *, source: str = "key object") -> "AuditTarget":
        return cls(kind="owsd", name=key.spec.name, key_source=source, key=key)

    @classmethod
    def from_key_file(cls, path: str | Path) -> "AuditTarget":
        from owsd.keys import Key

        path = Path(path)
        if not path.is_file():
            raise AuditError(f"key file {path} does not exist (make one with `owsd keygen`)")
        return cls.from_key(Key.load(path), source=f"key file {path.name}")

    @classmethod
    def from_spec(cls, spec, *, seed: Optional[int] = None) -> "AuditTarget":
        """A spec (or a spec JSON file) with a fresh key (seeded if ``seed``; never saved)."""
        from owsd.keys import generate_key
        from owsd.spec import ScramblerSpec

        where = "spec"
        if isinstance(spec, (str, Path)):
            where = f"spec file {Path(spec).name}"
            if not Path(spec).is_file():
                raise AuditError(f"spec file {spec} does not exist")
            spec = ScramblerSpec.load(spec)
        elif not isinstance(spec, ScramblerSpec):
            raise AuditError(f"expected a ScramblerSpec or a spec file, got {type(spec).__name__}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            key = generate_key(spec, seed=seed)
        src = f"{where}, key derived from seed {seed} (not secret)" if seed is not None else \
            f"{where}, fresh random key (not saved)"
        return cls.from_key(key, source=src)

    @classmethod
    def from_preset(cls, name: str, *, seed: Optional[int] = None) -> "AuditTarget":
        from owsd.presets import get_preset

        t = cls.from_spec(get_preset(name), seed=seed)
        t.key_source = t.key_source.replace("spec", f"preset {name}", 1)
        return t

    @classmethod
    def from_callable(cls, fn: Callable, *, name: str) -> "AuditTarget":
        """Any scrambler: float images ``(N, C, H, W)`` in [0, 1] -> images in [0, 1]."""
        if not callable(fn):
            raise AuditError(f"scrambler must be callable, got {type(fn).__name__}")
        if not isinstance(name, str) or not name.strip():
            raise AuditError("a callable scrambler needs a non-empty name")
        return cls(kind="callable", name=name, key_source="callable", scrambler=fn)

    @classmethod
    def coerce(cls, obj: Any, *, seed: Optional[int] = None, name: Optional[str] = None) -> "AuditTarget":
        """An :class:`AuditTarget` from a Key, ScramblerSpec, preset name, key/spec file or callable."""
        from owsd.keys import Key
        from owsd.presets import PRESETS
        from owsd.spec import ScramblerSpec

        if isinstance(obj, AuditTarget):
            return obj
        if isinstance(obj, Key):
            return cls.from_key(obj)
        if isinstance(obj, ScramblerSpec):
            return cls.from_spec(obj, seed=seed)
        if isinstance(obj, str) and obj in PRESETS:
            return cls.from_preset(obj, seed=seed)
        if isinstance(obj, (str, Path)):
            p = Path(obj)
            if not p.is_file():
                raise AuditError(f"{obj!r} is neither a preset ({sorted(PRESETS)}) nor an existing file")
            try:
                doc = json.loads(p.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise AuditError(f"{p}: not a key or spec file (not valid JSON: {exc})") from None
            if isinstance(doc, dict) and doc.get("format") == "owsd-key":
                return cls.from_key_file(p)
            return cls.from_spec(p, seed=seed)
        if callable(obj):
            return cls.from_callable(obj, name=name or getattr(obj, "__name__", "scrambler"))
        raise AuditError(f"cannot audit a {type(obj).__name__}: pass a Key, spec, preset name, file or callable")

    # -- public description --
    @property
    def spec(self):
        return self.key.spec if self.key is not None else None

    @property
    def fingerprint(self) -> str:
        if self.key is not None:
            return self.key.fingerprint
        return hashlib.sha256(f"callable|{self.name}".encode()).hexdigest()[:16]

    def describe(self) -> dict:
        """What the report says about the target (no secret)."""
        return {"kind": self.kind, "name": self.name, "fingerprint": self.fingerprint,
                "key_source": self.key_source, "seeded": bool(getattr(self.key, "seeded", False)),
                "spec": self.spec.to_dict() if self.spec is not None else None,
                "secret_weights": self.spec.num_parameters() if self.spec is not None else None,
                "linear": bool(self.spec.is_linear()) if self.spec is not None else None}

    # -- deployment --
    def channel(self, fit_images: Optional[np.ndarray] = None, *, device: str = "cpu"):
        """The channel of this target; OWSD targets fit their encoder on ``fit_images``."""
        from owsd.channel import CallableChannel, OwsdChannel
        from owsd.encoder import make_encoder

        if self.kind == "callable":
            return CallableChannel(self.scrambler, name=self.name)
        enc = make_encoder("pca", self.spec.embedding_dim).fit(fit_images)
        return OwsdChannel(self.key, enc, device=device)

    def build_victim(self, *, dataset: str, data_dir=None, cloud: Any = None, device: str = "cpu",
                     **sizes):
        from attacks.victim import Victim

        if self.kind == "callable":
            from owsd.channel import CallableChannel

            return Victim.build(dataset=dataset, data_dir=data_dir, channel=CallableChannel(self.scrambler,
                                name=self.name), cloud=cloud, device=device, **sizes)
        return Victim.build(dataset=dataset, data_dir=data_dir, key=self.key, cloud=cloud, device=device, **sizes)


# --- configuration ----------------------------------------------------------------------
@dataclass
class AuditConfig:
    """Settings of one audit.

    Attributes:
        out: run directory (created; an existing audit of the same target is resumed).
        dataset, data_dir: the victim's data (``digits`` is built in).
        cloud: cloud model name, or ``None`` for none (attacks that need one become ``n/a``).
        budget: ``smoke``, ``standard`` or ``full`` (attack parameters, victim sizes, utility).
        seed: seed of every attack's own randomness (and the victim's data split).
        only, exclude: attack names (or job ids) to restrict to / leave out.
        utility: measure the scheme's utility (``False`` to skip).
        threads: torch/BLAS (and onnxruntime cloud) threads during the audit (``None``: leave as
            is).  Default 1: the attacks' small networks gain little from a second thread and lose
            10-20x when threads outnumber the free cores of a shared machine.
        command: the command line, recorded in the report.
    """

    out: str | Path = "owsd-audit"
    dataset: str = "digits"
    data_dir: Optional[str | Path] = None
    cloud: Optional[str] = "tiny"
    budget: str = "smoke"
    seed: int = 0
    only: Optional[Sequence[str]] = None
    exclude: Sequence[str] = ()
    utility: bool = True
    device: str = "cpu"
    verbose: bool = True
    threads: Optional[int] = 1
    html: bool = True
    command: Optional[str] = None

    def validate(self) -> None:
        from owsd.cloud import CLOUD_NAMES
        from owsd.data import DATASETS

        if self.budget not in BUDGETS:
            raise AuditError(f"budget must be one of {BUDGETS}, got {self.budget!r}")
        if self.dataset not in DATASETS:
            raise AuditError(f"unknown dataset {self.dataset!r}; expected one of {DATASETS}")
        if self.cloud is not None and self.cloud not in CLOUD_NAMES:
            raise AuditError(f"unknown cloud {self.cloud!r}; expected one of {CLOUD_NAMES} (or None)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise AuditError(f"seed must be an integer, got {self.seed!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise AuditError(f"threads must be a positive integer, got {self.threads!r}")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise AuditError(f"data directory {self.data_dir} does not exist or is not a directory")
        if self.dataset != "digits" and self.data_dir is None:
            raise AuditError(f"dataset {self.dataset!r} needs --data-dir (a folder holding it); "
                             "the built-in dataset is 'digits'")


# --- the plan ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One attack under one configuration (``params`` override the budget's defaults)."""

    id: str
    attack: str
    params: dict
    role: str = "main"  # "main", "variant" or "sweep"

    def make(self, budget: str, seed: int, device: str, verbose: bool):
        from attacks.registry import get_attack

        return get_attack(self.attack)(budget=budget, seed=seed, device=device, verbose=verbose, **self.params)


def _slug(v: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(v)).strip("-")[:40] or "x"


def job_id(attack: str, params: dict) -> str:
    return attack + "".join(f"--{_slug(k)}-{_slug(params[k])}" for k in sorted(params))


def _variants(cls, budget: str) -> list[tuple[dict, str]]:
    """Configurations of one attack class: declared ones, the leakage suite's, and sweeps."""
    declared = getattr(cls, "AUDIT_VARIANTS", None)
    out: list[tuple[dict, str]] = [({}, "main")]
    if budget != "smoke":
        extra: list[dict] = []
        if isinstance(declared, dict):
            extra = list(declared.get(budget, ()))
        elif declared:
            extra = list(declared)
        elif cls.family == "leakage":
            try:
                from attacks.leakage import SUITE
            except ImportError:  # the suite table is optional
                SUITE = ()
            extra = [dict(p) for n, p in SUITE if n == cls.name]
        default = cls(budget=budget, seed=0, verbose=False).params
        for p in extra:
            p = {k: v for k, v in p.items() if k in cls.PARAMS}
            if p and any(default.get(k) != v for k, v in p.items()):
                out.append((p, "variant"))
    default = cls(budget=budget, seed=0, verbose=False).params
    for pname, fracs in SWEEPS.get(budget, {}).items():
        if pname in cls.PARAMS and isinstance(default.get(pname), int):
            for f in fracs:
                v = max(1, int(round(default[pname] * f)))
                if v != default[pname]:
                    out.append(({pname: v}, "sweep"))
    return out


def plan_jobs(budget: str, *, only: Optional[Iterable[str]] = None, exclude: Iterable[str] = ()) -> list[Job]:
    """Every registered attack under every configuration it supports at ``budget``."""
    from attacks.registry import available_attacks

    attacks = available_attacks()
    only = set(only) if only is not None else None
    exclude = set(exclude)
    if only is not None:
        unknown = sorted(n for n in only if n not in attacks and not any(n.startswith(a + "--") for a in attacks))
        if unknown:
            raise AuditError(f"unknown attack(s) {unknown}; available: {sorted(attacks)}")
    jobs, seen = [], set()
    for name, cls in attacks.items():
        for params, role in _variants(cls, budget):
            jid = job_id(name, params)
            if jid in seen:
                continue
            if only is not None and name not in only and jid not in only:
                continue
            if name in exclude or jid in exclude:
                continue
            seen.add(jid)
            jobs.append(Job(jid, name, params, role))
    return jobs


# --- running ------------------------------------------------------------------------------
def _execute(attack, victim):
    """Run one attack (a seam for tests that simulate interruptions)."""
    return attack(victim)


def _sub_victim(victim, sizes: dict):
    """The same deployment restricted to the first ``sizes`` images (caches are sliced, not redone)."""
    from attacks.victim import Victim
    from owsd.data import ImageDataset

    n = {k: min(int(sizes.get(k, len(getattr(victim, s)))), len(getattr(victim, s)))
         for k, s in (("n_private", "private"), ("n_public", "public"), ("n_heldout", "heldout"))}
    if n["n_private"] == len(victim.private) and n["n_public"] == len(victim.public) and \
            n["n_heldout"] == len(victim.heldout):
        return victim
    cut = lambda ds, k: ImageDataset(ds.name, ds.images[:k], ds.labels[:k], ds.num_classes)  # noqa: E731
    sub = Victim(dataset=victim.dataset, channel=victim.channel, private=cut(victim.private, n["n_private"]),
                 public=cut(victim.public, n["n_public"]), heldout=cut(victim.heldout, n["n_heldout"]),
                 cloud=victim.cloud)
    for k in ("emb", "scr", "out"):
        if k in victim._cache:
            sub._cache[k] = victim._cache[k][:n["n_private"]]
    pre = victim._cache.get("out_prefix")
    if "out" not in sub._cache and pre is not None and len(pre) >= n["n_private"]:
        sub._cache["out"] = pre[:n["n_private"]]  # outputs computed for a prefix of the private images
    return sub


def _not_applicable(attack, victim) -> Optional[str]:
    """Why ``attack`` cannot run on ``victim`` (requirements or threat model), or ``None``."""
    from attacks.base import RequirementError

    try:
        attack.check_requirements(victim)
    except RequirementError as exc:
        return str(exc)
    tm = attack.threat_model()
    if attack.family == "key-estimation" and victim.spec is None:
        return (f"{attack.name}: key estimation fits a key of the public scrambler spec; the target "
                f"{victim.channel.name!r} has no spec")
    if (tm.known_pairs or tm.chosen_queries) and tm.pair_input == "embedding" and not victim.has_embeddings:
        return (f"{attack.name}: its threat model gives (embedding, scrambled) pairs or queries; "
                f"the target {victim.channel.name!r} has no embeddings")
    if (tm.cloud_outputs or tm.queried_model == "cloud") and victim.cloud is None:
        return f"{attack.name}: its threat model gives cloud outputs or cloud queries; the audit has no cloud"
    return _too_small(attack, victim)


def _too_small(attack, victim) -> Optional[str]:
    """Why the victim's data cannot grant ``attack``'s threat model at its budget (``None`` if it can)."""
    tm, have = attack.threat_model(), {"private": len(victim.private), "public": len(victim.public)}
    for need, pool, what in ((tm.known_pairs, "private", "known pairs"), (tm.auxiliary_size, "public", "auxiliary")):
        if need > have[pool]:
            return (f"{attack.name}: its threat model at this budget needs {need} {what} images; the victim's "
                    f"{victim.dataset} {pool} pool has {have[pool]} (use a larger dataset)")
    return None


@contextlib.contextmanager
def _threads(n: Optional[int]):
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)


def _machine() -> dict:
    import os

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "summary": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"}


def _victim_sizes(jobs: Sequence[Job], budget: str, seed: int, dataset: str, data_dir, notes: list) -> dict:
    from owsd.data import load_splits

    sizes: dict[str, int] = {"n_private": 8, "n_public": 8, "n_heldout": 8}
    for j in jobs:
        for k, v in j.make(budget, seed, "cpu", False).victim_sizes().items():
            sizes[k] = max(sizes.get(k, 0), int(v))
    try:
        train, test = load_splits(dataset, data_dir)
    except (FileNotFoundError, ValueError, OSError) as exc:
        where = f" from {data_dir}" if data_dir is not None else ""
        raise AuditError(f"cannot load dataset {dataset!r}{where}: {exc}") from None
    room = len(train)
    if sizes["n_private"] + sizes["n_public"] > room:
        f = room / (sizes["n_private"] + sizes["n_public"])
        new = {"n_private": int(sizes["n_private"] * f), "n_public": room - int(sizes["n_private"] * f)}
        notes.append(f"{dataset} has {room} training images: the victim's private/public pools were cut from "
                     f"{sizes['n_private']}/{sizes['n_public']} to {new['n_private']}/{new['n_public']}")
        sizes.update(new)
    if sizes["n_heldout"] > len(test):
        notes.append(f"{dataset} has {len(test)} test images: held-out set cut from {sizes['n_heldout']}")
        sizes["n_heldout"] = len(test)
    return sizes


def _check_run_dir(out: Path, manifest: dict) -> None:
    path = out / "audit.json"
    if not path.exists():
        if out.exists() and any(out.iterdir()):
            raise AuditError(f"{out} exists and is not an audit run directory; choose another --out")
        return
    try:
        old = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as exc:
        raise AuditError(f"{path} is corrupt ({exc}); remove the folder or choose another --out") from None
    same = ("target.fingerprint", "target.spec", "dataset", "cloud", "budget", "seed")
    for k in same:
        a, b = old, manifest
        for part in k.split("."):
            a, b = (a or {}).get(part), (b or {}).get(part)
        if a != b:
            hint = (" (a --spec or --preset without --seed draws a fresh key each time: pass --key or --seed "
                    "to resume)" if k.startswith("target") else "")
            raise AuditError(f"{out} holds an audit with another {k} ({a!r}, asked {b!r}); use another --out "
                             f"or pass --restart{hint}")


def _load_job(d: Path) -> Optional[dict]:
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


def _finish_job(d: Path, status: dict) -> None:
    atomic_write_json(d / "status.json", status)
    atomic_write_text(d / "done", "done\n")


def run_audit(target: Any, config: Optional[AuditConfig] = None, *, restart: bool = False, **overrides) -> dict:
    """Audit ``target`` (see :meth:`AuditTarget.coerce`) and write the run directory; return the report.

    ``overrides`` set :class:`AuditConfig` fields.  ``restart`` deletes a previous audit in
    ``config.out`` first; otherwise finished attacks there are kept (resume).
    """
    cfg = dataclasses.replace(config or AuditConfig(), **overrides)
    cfg.validate()
    target = AuditTarget.coerce(target)
    out = Path(cfg.out)
    notes: list[str] = []
    with _threads(cfg.threads):
        jobs = plan_jobs(cfg.budget, only=cfg.only, exclude=cfg.exclude)
        sizes = _victim_sizes(jobs, cfg.budget, cfg.seed, cfg.dataset, cfg.data_dir, notes)
        manifest = {"format": RUN_FORMAT, "version": 1, "target": target.describe(),
                    "dataset": {"name": cfg.dataset, "data_dir": str(cfg.data_dir) if cfg.data_dir else None},
                    "cloud": cfg.cloud, "budget": cfg.budget, "seed": cfg.seed, "victim_sizes": sizes,
                    "jobs": [dataclasses.asdict(j) for j in jobs], "command": cfg.command, "machine": _machine(),
                    "toolkit_version": _version()}
        manifest = json.loads(json.dumps(manifest, default=str))  # tuples -> lists, as read back
        if restart and (out / "audit.json").exists():
            log.info("restart: removing the previous audit in %s", out)
            shutil.rmtree(out)
        _check_run_dir(out, manifest)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "audit.json", manifest)
        if target.key is not None and target.key.seeded:
            notes.append("the key was derived from a seed: reproducible, hence not secret (experiments only)")

        timing: dict[str, Any] = {"threads": torch.get_num_threads(), "jobs": {}}
        t_all, c_all = time.perf_counter(), time.process_time()
        cloud = _make_cloud(cfg)
        utility = None
        if cfg.utility and cfg.cloud:
            t0, c0 = time.perf_counter(), time.process_time()
            utility = _run_utility(target, cfg, out, notes, cloud=cloud)
            timing["utility"] = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
        if cfg.utility and not cfg.cloud:
            notes.append("no cloud: utility not measured")
        done = {j.id: _load_job(out / "attacks" / j.id) for j in jobs}
        pending = [j for j in jobs if done[j.id] is None]
        if len(pending) < len(jobs):
            log.info("resuming: %d of %d attacks already done in %s", len(jobs) - len(pending), len(jobs), out)
        errors: dict[str, dict] = {}
        if pending:
            t0, c0 = time.perf_counter(), time.process_time()
            victim = _build_victim(target, cfg, sizes, pending, cloud=cloud)
            timing["victim"] = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
            bar = tqdm(pending, desc="audit", unit="attack", disable=not cfg.verbose)
            for j in bar:
                bar.set_postfix_str(j.id)
                st = _run_job(j, victim, cfg, out / "attacks" / j.id)
                timing["jobs"][j.id] = {k: st.get(k) for k in ("seconds", "cpu_seconds", "status")}
                if st["status"] == "error":
                    errors[j.id] = st
                else:
                    done[j.id] = st
            bar.close()
        t0, c0 = time.perf_counter(), time.process_time()
        rep = assemble(out, jobs, done, errors, utility, manifest, notes, html=cfg.html)
        timing["report"] = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
        timing["total"] = {"seconds": time.perf_counter() - t_all, "cpu_seconds": time.process_time() - c_all}
        atomic_write_json(out / "timing.json", timing)
    return rep


def _make_cloud(cfg: AuditConfig):
    """The one cloud the audit's utility measurement and victim share (``None`` without a cloud)."""
    if not cfg.cloud:
        return None
    from owsd.cloud import make_cloud

    kw = {"threads": cfg.threads} if cfg.cloud == "efficientnet-lite0" and cfg.threads else {}
    return make_cloud(cfg.cloud, **kw)


def _version() -> str:
    try:
        from owsd import __version__
        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"


def _run_utility(target: AuditTarget, cfg: AuditConfig, out: Path, notes: list, *, cloud=None) -> Optional[dict]:
    d = out / "utility"
    if (d / "done").is_file():
        try:
            return json.loads((d / "utility.json").read_text())
        except (OSError, json.JSONDecodeError):
            log.warning("unreadable utility.json; measuring again")
    log.info("measuring the scheme's utility (%s budget)", cfg.budget)
    try:
        u = measure_utility(target, dataset=cfg.dataset, data_dir=cfg.data_dir, cloud=cloud or cfg.cloud,
                            device=cfg.device, verbose=False, **UTILITY_BUDGETS[cfg.budget])
    except (ValueError, TypeError, RuntimeError) as exc:
        log.warning("utility measurement failed: %s", exc)
        notes.append(f"utility measurement failed: {exc}")
        return {"error": str(exc)}
    atomic_write_json(d / "utility.json", u)
    if "embedding_only" in u["accuracy"]:
        try:
            from owsd.pipeline import plot_utility

            plot_utility(u, d / "utility.png")
        except Exception as exc:  # a figure must never sink an audit
            log.info("utility figure skipped: %s", exc)
    atomic_write_text(d / "done", "done\n")
    return u


def _build_victim(target: AuditTarget, cfg: AuditConfig, sizes: dict, pending: Sequence[Job], *, cloud=None):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        victim = target.build_victim(dataset=cfg.dataset, data_dir=cfg.data_dir, cloud=cloud or cfg.cloud,
                                     device=cfg.device, split_seed=cfg.seed, **sizes)
    victim.private_scrambled()
    n_cloud = 0  # cloud outputs are paid only for the private images that cloud attacks look at
    for j in pending:
        a = j.make(cfg.budget, cfg.seed, cfg.device, False)
        if a.requirements.cloud or a.threat_model().cloud_outputs:
            n_cloud = max(n_cloud, int(a.victim_sizes().get("n_private", len(victim.private))))
    if n_cloud and victim.cloud is not None:
        n_cloud = min(n_cloud, len(victim.private))
        try:
            outs = victim.cloud.predict(victim.private_scrambled()[:n_cloud], verbose=cfg.verbose)
        except (ValueError, TypeError) as exc:  # the attacks that need it will report it
            log.warning("cloud outputs of the victim's images failed: %s", exc)
        else:
            if n_cloud == len(victim.private):
                victim._cache["out"] = outs
            victim._cache["out_prefix"] = outs
    log.info("victim %s built in %.1f s (%s)", victim.channel.name, time.perf_counter() - t0, sizes)
    return victim


def _run_job(job: Job, victim, cfg: AuditConfig, d: Path) -> dict:
    """Run one job into its folder; return its status (``done`` marker written unless it errors)."""
    from attacks.base import RequirementError

    attack = job.make(cfg.budget, cfg.seed, cfg.device, cfg.verbose)
    sub = _sub_victim(victim, attack.victim_sizes())
    reason = _not_applicable(attack, sub)
    base = {"job": job.id, "attack": job.attack, "params_override": job.params, "role": job.role,
            "family": attack.family, "finding": attack.finding, "declared_sizes": attack.victim_sizes(),
            "threat_model": attack.threat_model().to_dict(),
            "threat_model_text": attack.threat_model().describe(), "requirements": attack.requirements.to_dict(),
            "seed": cfg.seed}
    if reason is None:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = _execute(attack, sub)
        except RequirementError as exc:
            reason = str(exc)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # one attack's crash must not sink the audit; it is rerun next time
            log.error("%s failed: %s: %s", job.id, type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            st = {**base, "status": "error", "reason": f"{type(exc).__name__}: {exc}",
                  "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
            atomic_write_json(d / "status.json", st)
            return st
        else:
            d.mkdir(parents=True, exist_ok=True)
            result.save(d)
            figs = attack_figures(result, d)
            st = {**base, "status": "ok", "figures": figs, "seconds": time.perf_counter() - t0,
                  "cpu_seconds": time.process_time() - c0,
                  "victim_sizes": {"n_private": len(sub.private), "n_public": len(sub.public),
                                   "n_heldout": len(sub.heldout)}}
            _finish_job(d, st)
            st["result"] = result.to_dict()
            return st
    st = {**base, "status": "n/a", "reason": reason, "reduced": _too_small(attack, sub) is not None}
    log.info("%s: not applicable: %s", job.id, reason)
    _finish_job(d, st)
    return st


# --- the report -------------------------------------------------------------------------
def _entry(job: Job, st: dict) -> dict:
    e = {k: st.get(k) for k in ("job", "attack", "family", "finding", "role", "params_override", "threat_model",
                                "threat_model_text", "requirements", "seed", "victim_sizes", "declared_sizes",
                                "reduced")}
    e["job"] = job.id
    if st["status"] != "ok":
        e.update(verdict="n/a" if st["status"] == "n/a" else "error", reason=st.get("reason", ""),
                 metrics={}, chance={}, ci={}, p_values={}, primary=None)
        return e
    r = st["result"]
    e["verdict"] = "pass"  # graded in assemble()
    for k in ("params", "metrics", "chance", "ci", "p_values", "primary", "cost", "curves", "budget"):
        e[k] = r.get(k)
    e["threat_model"] = r.get("threat_model", e["threat_model"])
    rel = f"attacks/{job.id}"
    files = {"result": f"{rel}/result.json"}
    for name in ("per_sample.csv", "raw.npz"):
        files[name.split(".")[0]] = f"{rel}/{name}"
    e["files"] = files
    e["figures"] = {k: f"{rel}/{v}" for k, v in (st.get("figures") or {}).items()}
    return e


def assemble(out: Path, jobs: Sequence[Job], done: dict, errors: dict, utility: Optional[dict],
             manifest: dict, notes: list, *, html: bool = True) -> dict:
    """Grade every finished job, draw the audit's figures, write ``report.json`` and ``report.html``."""
    entries = []
    for j in jobs:
        st = done.get(j.id) or errors.get(j.id)
        if st is None:
            continue
        e = _entry(j, st)
        if st["status"] == "ok" and not (out / e["files"]["per_sample"]).exists():
            e["files"].pop("per_sample")
        if st["status"] == "ok" and not (out / e["files"]["raw"]).exists():
            e["files"].pop("raw")
        entries.append(e)
    graded = [e for e in entries if e["verdict"] not in ("n/a", "error")]
    for e, padj in zip(graded, _report.adjust_pvalues(graded)):
        g = _report.grade(e, p_adjusted={**{k: v for k, v in e.get("p_values", {}).items()}, **padj})
        e.update(verdict=g["verdict"], reasons=g["reasons"], graded=g["rows"], p_adjusted=padj,
                 advantage=_report.advantage(e))
        if (e.get("threat_model") or {}).get("knows_key"):
            e["reference"] = True  # an upper bound, not an attack: left out of the summary
            e["reasons"] = ["reference run: the attacker knows the key (upper bound)"] + e["reasons"]
    missing = [j.id for j in jobs if j.id not in done and j.id not in errors]
    ver = _verdicts.finalize(entries, budget=manifest["budget"], missing=missing)
    figdir = out / "figures"
    figures: dict[str, dict] = {}
    name = manifest["target"]["name"]
    try:
        p = key_recovery_plot(entries, figdir / "key_recovery.png", title=f"key recovery: {name}")
        if p:
            figures["key-recovery curves"] = {"path": "figures/key_recovery.png", "caption":
                                              "functional error vs known pairs / chosen queries (log-log; chance "
                                              "1.0, key recovered below 0.1) and ciphertext-only "
                                              "re-identification vs pool size (chance 1/K)"}
        p = advantage_plot(graded, figdir / "advantage.png", title=f"attacker advantage: {name}")
        if p:
            figures["attacker advantage"] = {"path": "figures/advantage.png", "caption":
                                             "(metric - chance) / (perfect - chance) of each attack's primary "
                                             "metric, clipped to [0, 1]; colour = verdict"}
        summ = _report.summarize(entries)
        u = _report.headline_utility(utility)
        if u is not None:
            k = max(utility["accuracy"]["cloud_only"], key=int)
            privacy_utility_plot([{"label": name, "utility": u, "privacy": summ["max_reconstruction_advantage"],
                                   "utility_ci": utility["accuracy_ci95"]["cloud_only"][k],
                                   "verdict": ver["kernel_verdict"]["verdict"],
                                   "baseline": utility["accuracy"]["plaintext"],
                                   "chance": utility["chance"]}],
                                 figdir / "privacy_utility.png", title=f"privacy-utility: {name}")
            figures["privacy-utility"] = {"path": "figures/privacy_utility.png", "caption":
                                          f"cloud-only internal-model accuracy (top-{k}) vs the largest key-"
                                          "estimation/inversion advantage; compare kernels with "
                                          "`owsd audit-compare`"}
    except Exception as exc:  # figures must never sink an audit
        log.warning("audit figures skipped: %s", exc)
        notes.append(f"some figures were skipped: {exc}")
    for e in entries:
        for fname, path in (e.get("figures") or {}).items():
            figures[f"{e['job']}: {fname}"] = {"path": path, "caption": e.get("threat_model_text", "")}
    if (out / "utility" / "utility.png").exists():
        figures["utility"] = {"path": "utility/utility.png",
                              "caption": "internal-model accuracy vs cloud output size (the scheme's utility)"}
    if missing:
        notes.append(f"not run yet: {missing}")
    rep = _report.build_report(manifest=manifest, entries=entries, utility=utility, figures=figures, notes=notes,
                               verdicts=ver)
    atomic_write_json(out / "report.json", rep)
    if html:
        atomic_write_text(out / "report.html", _report.render_html(rep))
    log.info("wrote %s", out / "report.json")
    return rep


def audit(target: Any, *, out: str | Path, **config) -> dict:
    """Python entry point: audit a Key, spec, preset name, key/spec file or any callable scrambler.

    A callable maps float images ``(N, C, H, W)`` in [0, 1] to scrambled images in [0, 1]
    (3x224x224 to be sent to the built-in clouds); name it with ``name=``.

    Example:
        >>> import tempfile, torch.nn.functional as F
        >>> def blur(x):  # another "instance encoding" to audit
        ...     x = F.interpolate(x.expand(-1, 3, -1, -1), size=(224, 224), mode="bilinear")
        ...     return F.avg_pool2d(x, 9, stride=1, padding=4)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     rep = audit(blur, name="blur", out=d, only=("key-known-plaintext",), utility=False, verbose=False)
        >>> rep["attacks"][0]["verdict"]
        'n/a'
    """
    name = config.pop("name", None)
    seed = config.pop("key_seed", None)
    restart = config.pop("restart", False)
    return run_audit(AuditTarget.coerce(target, seed=seed, name=name), AuditConfig(out=out, **config),
                     restart=restart)
