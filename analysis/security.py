"""Security regressions for pytest: assert that an attack is resisted, or that it succeeds, within bands.

Use these in your own tests to pin what a kernel resists and what it leaks::

    # conftest.py
    pytest_plugins = ("analysis.security",)      # provides the ``owsd_attack`` fixture

    # test_my_kernel.py
    import pytest
    from analysis.security import assert_leaks, assert_resists

    @pytest.mark.security
    def test_my_kernel_resists_known_plaintext(owsd_attack):
        r = owsd_attack("key-known-plaintext", "my.key", seed=0)
        assert_resists(r, "functional_error", band=(0.9, 20.0))

A *band* pins a metric between two values (robust across seeds, unlike a single threshold).
:func:`assert_resists` also requires that the metric does not beat chance significantly, or
stays on the defender's side of its declared pass line (:data:`analysis.report.THRESHOLDS`);
:func:`assert_leaks` requires that it beats chance (p < ``alpha`` or the CI excludes chance)
and, with ``broken=True``, that it crosses the declared fail line.

Example:
    >>> r = {"attack": "kp", "family": "key-estimation", "primary": "functional_error",
    ...      "metrics": {"functional_error": 0.001}, "chance": {"functional_error": 1.0},
    ...      "ci": {"functional_error": [0.0008, 0.0012]}, "p_values": {"functional_error": 1e-12}}
    >>> assert_leaks(r, band=(0, 0.01), broken=True)
    >>> assert_resists(r)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: kp: functional_error = 0.001 ... was expected to be resisted, but fail: ...
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

from analysis.audit import AuditTarget
from analysis.report import THRESHOLDS, grade
from analysis.verdicts import below_chance
from attacks.registry import get_attack
from attacks.scoring import ScoringConfig
from attacks.victim import Victim

log = logging.getLogger(__name__)

BandLike = Union["Band", Sequence[float], None]


@dataclass(frozen=True)
class Band:
    """A closed interval ``[lo, hi]`` a pinned metric must lie in."""

    lo: float = -math.inf
    hi: float = math.inf

    def __post_init__(self) -> None:
        if not (self.lo <= self.hi):
            raise ValueError(f"band: lo ({self.lo}) must not exceed hi ({self.hi})")

    @classmethod
    def of(cls, band: BandLike) -> Optional["Band"]:
        if band is None or isinstance(band, Band):
            return band
        lo, hi = band
        return cls(-math.inf if lo is None else float(lo), math.inf if hi is None else float(hi))

    def __contains__(self, v: float) -> bool:
        return self.lo <= v <= self.hi

    def __str__(self) -> str:
        return f"[{self.lo:g}, {self.hi:g}]"


def _as_dict(result: Any) -> dict:
    if isinstance(result, dict):
        return result
    if hasattr(result, "to_dict"):
        return result.to_dict()
    raise TypeError(f"expected an AttackResult or a result dict, got {type(result).__name__}")


def _describe(r: dict, m: str) -> str:
    v = r["metrics"][m]
    lo, hi = (r.get("ci", {}).get(m) or [float("nan")] * 2)
    ch, p = r.get("chance", {}).get(m), r.get("p_values", {}).get(m)
    extra = [f"chance {ch:.3g}" if ch is not None else "no chance level"]
    if p is not None:
        extra.append(f"p {p:.3g}")
    return f"{r.get('attack', '?')}: {m} = {v:.4g} [{lo:.4g}, {hi:.4g}] ({', '.join(extra)})"


def _metric(r: dict, metric: Optional[str]) -> str:
    m = metric or r.get("primary")
    if m is None:
        raise AssertionError(f"{r.get('attack', '?')}: no metric named and no primary metric")
    if m not in r.get("metrics", {}):
        raise AssertionError(f"{r.get('attack', '?')}: no metric {m!r}; it has {sorted(r.get('metrics', {}))}")
    return m


def _verdict(r: dict, m: str, alpha: float) -> dict:
    rows = tuple(t for t in THRESHOLDS if t.metric == m and t.applies(r))
    if rows:
        return grade(r, alpha=alpha, thresholds=rows)
    return grade({**r, "primary": m}, alpha=alpha, thresholds=())


def _in_band(result: Any, metric: Optional[str], band: BandLike) -> tuple[dict, str]:
    """The result as a dict and the metric checked; raises when the value left its pinned band."""
    r = _as_dict(result)
    m = _metric(r, metric)
    b = Band.of(band)
    if b is not None and float(r["metrics"][m]) not in b:
        raise AssertionError(f"{_describe(r, m)} left its pinned band {b}")
    return r, m


def assert_resists(result: Any, metric: Optional[str] = None, *, band: BandLike = None,
                   alpha: float = 0.05, allow_warn: bool = False) -> None:
    """Assert the kernel resists: ``metric`` (primary by default) does not beat chance
    significantly, or stays on the defender's side of its declared pass line; and lies in ``band``.

    ``allow_warn=True`` accepts a metric that beats chance without crossing its fail line
    (verdict ``warn``): "not broken" rather than "indistinguishable from chance"."""
    r, m = _in_band(result, metric, band)
    g = _verdict(r, m, alpha)
    if g["verdict"] not in (("pass", "warn") if allow_warn else ("pass",)):
        raise AssertionError(f"{_describe(r, m)} was expected to be resisted, but {g['verdict']}: "
                             f"{'; '.join(g['reasons'])}")
    # a score significantly on the defender's side of chance is no evidence of resistance
    entry = {**r, "job": r.get("attack", "?"), "primary": m, "verdict": g["verdict"]}
    below = below_chance([entry], alpha=alpha)
    if below:
        raise AssertionError(f"{_describe(r, m)} was expected to be resisted, but is inconclusive: "
                             f"{below[entry['job']]}")


def assert_inapplicable(result: Any, metric: Optional[str] = None, *, band: BandLike = None,
                        alpha: float = 0.05) -> None:
    """Assert the attack did not apply: ``metric`` lies significantly on the defender's side of
    chance (an ``inconclusive`` result: no evidence either way about the kernel), and in ``band``."""
    r, m = _in_band(result, metric, band)
    g = _verdict(r, m, alpha)
    entry = {**r, "job": r.get("attack", "?"), "primary": m, "verdict": g["verdict"]}
    if not below_chance([entry], alpha=alpha):
        raise AssertionError(f"{_describe(r, m)} was expected to lie below chance (the attack does not apply), "
                             f"but does not ({g['verdict']})")


def assert_leaks(result: Any, metric: Optional[str] = None, *, band: BandLike = None, alpha: float = 0.05,
                 broken: bool = False) -> None:
    """Assert the attack succeeds: ``metric`` beats chance significantly and lies in ``band``;
    with ``broken=True`` it must also cross its declared fail line (verdict ``fail``)."""
    r, m = _in_band(result, metric, band)
    g = _verdict(r, m, alpha)
    sig = any(row.get("significant") for row in g["rows"])
    if not sig:
        raise AssertionError(f"{_describe(r, m)} was expected to beat chance (alpha {alpha}), but does not")
    if broken and g["verdict"] != "fail":
        raise AssertionError(f"{_describe(r, m)} was expected to break the kernel (cross its fail line), "
                             f"but {g['verdict']}: {'; '.join(g['reasons'])}")


# --- running attacks for tests ----------------------------------------------------------------
_VICTIMS: dict[tuple, Any] = {}


def _target_key(target: Any, seed: Optional[int]) -> tuple:
    if isinstance(target, str):
        return ("name", target, seed)
    if isinstance(target, AuditTarget):
        return ("target", target.fingerprint)
    return ("obj", id(target), seed)


def run_attack(name: str, target: Any = "default", *, seed: int = 0, key_seed: Optional[int] = 0,
               dataset: str = "digits", data_dir=None, budget: str = "smoke", cloud: Optional[str] = None,
               verbose: bool = False, scoring: Optional[ScoringConfig] = None, **params):
    """Run one registered attack against ``target`` and return its :class:`~attacks.base.AttackResult`.

    ``target``: a :class:`~attacks.victim.Victim` (cut down to the attack's sizes), a preset name (key derived from ``key_seed``),
    a key/spec file, a :class:`~owsd.keys.Key`, or an :class:`~analysis.audit.AuditTarget`.
    Victims are cached per target and data, grown to the largest sizes asked for, and cut
    down to each attack's own sizes.  ``scoring``: the settings of the score's statistics
    (default: the budget's, :meth:`attacks.scoring.ScoringConfig.for_budget`); ``params`` are
    the attack's parameters.
    """
    cls = get_attack(name)
    attack = cls(budget=budget, seed=seed, verbose=verbose, **params)
    if attack.requirements.cloud and cloud is None:  # the instance's: they follow its parameters
        cloud = "tiny"
    if isinstance(target, Victim):
        victim = target.restrict(**attack.victim_sizes())
    else:
        sizes = attack.victim_sizes()
        ck = (_target_key(target, key_seed), dataset, str(data_dir), cloud)
        cached = _VICTIMS.get(ck)
        if cached is None or any(sizes.get(k, 0) > getattr(cached, "_sizes")[k] for k in sizes):
            t = AuditTarget.coerce(target, seed=key_seed)
            have = getattr(cached, "_sizes", {}) if cached is not None else {}
            want = {k: max(int(sizes.get(k, 8)), have.get(k, 0)) for k in ("n_private", "n_public", "n_heldout")}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cached = t.build_victim(dataset=dataset, data_dir=data_dir, cloud=cloud, **want)
            cached._sizes = want
            _VICTIMS[ck] = cached
        victim = cached.restrict(**sizes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return attack(victim, scoring=scoring if scoring is not None else ScoringConfig.for_budget(budget))


try:  # the pytest fixture, for ``pytest_plugins = ("analysis.security",)``
    import pytest

    @pytest.fixture(scope="session")
    def owsd_attack():
        """``owsd_attack(name, target="default", *, seed=0, dataset="digits", budget="smoke", ...)``:
        run an attack and return its result (victims cached for the session)."""
        yield run_attack
        _VICTIMS.clear()
except ImportError:  # pragma: no cover - pytest is a test extra
    pass
