"""The attack contract shared by every adversary (after foolbox 3 and ART).

An attack declares, as data, its ``name``, ``family``, a frozen dataclass of parameters
(``Params``, :mod:`attacks.params`) whose values per budget come from the one budgets table
(:mod:`attacks.budgets`), and, computed from the parameters, its
:class:`~attacks.threat.Requirements` and :class:`~attacks.threat.ThreatModel`.
:meth:`Attack.applicable` is the one rule of whether it can run on a victim.  Its ``run``
sees only an :class:`~attacks.victim.AttackerView` and returns an :class:`AttackOutput`.
The final :meth:`Attack.__call__` (subclasses may not override it) checks applicability,
builds the view, times ``run``, and has the output scored against ground truth by the
scorer registered for the output's type (:func:`register_scorer`), never by the attack
itself.  The result is a frozen :class:`AttackResult` that serializes to JSON.

Example:
    >>> class Guess(Attack):
    ...     name, family = "guess", "leakage"
    ...     def threat_model(self): return ThreatModel()
    ...     def run(self, view, *, rng, generator):
    ...         return LabelPredictions(rng.integers(0, 10, view.num_targets), np.arange(view.num_targets))
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = Victim.build(dataset="digits", preset="linear", seed=0, n_private=200, n_public=8)
    >>> r = Guess(seed=0, verbose=False)(v)
    >>> r.chance["accuracy"] < 0.2, r.p_values["accuracy"] > 0.01, r.finding, r.cost["oracle_queries"]
    (True, True, 'kernel', {'scramble': 0, 'cloud': 0, 'internal': 0})
    >>> sorted(r.to_dict()["provenance"])
    ['command', 'date', 'machine', 'versions']
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
import secrets as _secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import numpy as np
import torch

from owsd import provenance
from owsd.stats import binomial_pvalue, wilson_interval
from attacks.budgets import BUDGETS, TABLE, Budget, budget_of
from attacks.metrics import MetricSpec, declare, higher, metric_spec
from attacks.params import NoParams, resolve
from attacks.scoring import ScoringConfig
from attacks.threat import Requirements, ThreatModel
from attacks.victim import AttackerView, Victim
from owsd.io import atomic_write_json, atomic_write_text, json_default, save_npz

log = logging.getLogger(__name__)

FAMILIES = ("key-estimation", "inversion", "leakage")
#: what an attack's outcome is evidence about: the scrambling ``kernel`` (it depends on the
#: kernel), or the rest of the ``system`` (e.g. the organization's internal model)
FINDINGS = ("kernel", "system")


class RequirementError(ValueError):
    """The target does not offer what the attack declares it needs."""


# --- outputs and their scorers --------------------------------------------------------
class AttackOutput:
    """Base class of what ``run`` returns.  Each concrete type has one registered scorer."""

    def raw(self) -> dict[str, np.ndarray]:
        """Arrays worth saving beside the result (reconstructions, estimates)."""
        return {}


@dataclass
class Score:
    """What a scorer computes: every metric with its chance level and interval.

    ``specs`` holds, for each metric its scorer declared (:mod:`attacks.metrics`), which way
    helps the attacker and the value of a perfect attack."""

    metrics: dict[str, float]
    chance: dict[str, float]
    ci: dict[str, tuple[float, float]]
    p_values: dict[str, float] = field(default_factory=dict)
    per_sample: dict[str, np.ndarray] = field(default_factory=dict)
    curves: dict[str, list] = field(default_factory=dict)
    primary: Optional[str] = None
    specs: dict[str, MetricSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        found = {m: metric_spec(m) for m in self.metrics if m not in self.specs}
        self.specs = {**{m: s for m, s in found.items() if s is not None}, **self.specs}


#: ``scorer(output, victim, view, scoring)``: ``scoring`` is the runner's :class:`ScoringConfig`
Scorer = Callable[[Any, Victim, AttackerView, ScoringConfig], Score]
_SCORERS: dict[type, Scorer] = {}


def register_scorer(output_type: type) -> Callable[[Scorer], Scorer]:
    """Register the scorer of an :class:`AttackOutput` type (one per type)."""
    def deco(fn: Scorer) -> Scorer:
        if output_type in _SCORERS:
            raise ValueError(f"a scorer for {output_type.__name__} is already registered")
        _SCORERS[output_type] = fn
        return fn
    return deco


def scorer_for(output: AttackOutput) -> Scorer:
    for t in type(output).__mro__:
        if t in _SCORERS:
            return _SCORERS[t]
    raise TypeError(f"no scorer registered for {type(output).__name__}")


@dataclass
class LabelPredictions(AttackOutput):
    """Predicted labels for some of the victim's targets (label leakage)."""

    predicted: np.ndarray
    target_indices: np.ndarray
    exclude_labelled: bool = True

    def raw(self) -> dict[str, np.ndarray]:
        return {"predicted": np.asarray(self.predicted), "target_indices": np.asarray(self.target_indices)}


declare(accuracy=higher(1.0))


@register_scorer(LabelPredictions)
def _score_labels(out: LabelPredictions, victim: Victim, view: AttackerView, scoring: ScoringConfig) -> Score:
    idx = np.asarray(out.target_indices)
    pred = np.asarray(out.predicted)
    if pred.shape != idx.shape:
        raise ValueError(f"{len(pred)} predictions for {len(idx)} target indices")
    if out.exclude_labelled and view.labelled_indices is not None:
        keep = ~np.isin(idx, view.labelled_indices)
        idx, pred = idx[keep], pred[keep]
    truth = victim.private.labels[idx]
    correct = pred == truth
    k, n = int(correct.sum()), len(correct)
    chance = float(np.max(np.bincount(truth, minlength=victim.private.num_classes)) / max(1, n))
    return Score(metrics={"accuracy": k / max(1, n), "n": n}, chance={"accuracy": chance},
                 ci={"accuracy": wilson_interval(k, n)}, p_values={"accuracy": binomial_pvalue(k, n, chance)},
                 per_sample={"index": idx, "correct": correct.astype(np.int8)}, primary="accuracy")


# --- the result -----------------------------------------------------------------------
@dataclass(frozen=True)
class AttackResult:
    """A scored attack run.  ``to_dict`` is what ``result.json`` holds.

    ``cost``: ``seconds`` (wall time of the attack's ``run``: what the attacker pays),
    ``cpu_seconds`` (its process CPU time, all threads), ``scorer_seconds`` /
    ``scorer_cpu_seconds`` (the scorer's side: challenge games, permutation nulls, metrics),
    ``total_seconds`` (both), ``queries`` (scramble-oracle queries used), ``oracle_queries``
    (queries used per oracle: ``scramble``, ``cloud``, ``internal``; :mod:`attacks.oracles`),
    ``known_pairs``, ``device`` and ``threads`` (torch intra-op threads during the run).
    ``finding`` is the attack's declared :data:`FINDINGS` scope.  ``metric_specs``: each
    declared metric's direction and perfect value (:mod:`attacks.metrics`).  ``scoring``: the
    settings of the scorer's statistics the runner chose (:class:`attacks.scoring.ScoringConfig`).
    ``provenance``: where and
    from what the figures came (:func:`owsd.provenance.record` at the start of the run:
    date, command, machine with its load, versions with the git commit).
    """

    attack: str
    family: str
    budget: str
    threat_model: dict
    requirements: dict
    params: dict
    metrics: dict
    chance: dict
    ci: dict
    p_values: dict
    primary: Optional[str]
    cost: dict
    seed: int
    target: dict
    curves: dict = field(default_factory=dict)
    per_sample: dict = field(default_factory=dict, repr=False)
    raw: dict = field(default_factory=dict, repr=False)
    finding: str = "kernel"
    provenance: dict = field(default_factory=dict)
    metric_specs: dict = field(default_factory=dict)
    scoring: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("per_sample", "raw")}
        d["ci"] = {k: [float(v[0]), float(v[1])] for k, v in self.ci.items()}
        return json.loads(json.dumps(d, default=json_default))

    def save(self, out_dir: str | Path) -> Path:
        """Write ``result.json``, ``per_sample.csv`` and ``raw.npz`` atomically."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if self.per_sample:
            cols = list(self.per_sample)
            arrs = [np.asarray(self.per_sample[c]).reshape(-1) for c in cols]
            lines = [",".join(cols)] + [",".join(_fmt(a[i]) for a in arrs) for i in range(len(arrs[0]))]
            atomic_write_text(out / "per_sample.csv", "\n".join(lines) + "\n")
        if self.raw:
            save_npz(out / "raw.npz", **{k: np.asarray(v) for k, v in self.raw.items()})
        atomic_write_json(out / "result.json", self.to_dict())
        return out / "result.json"


def _fmt(v) -> str:
    return repr(float(v)) if isinstance(v, (float, np.floating)) else str(v)


# --- the attack -----------------------------------------------------------------------
class Attack(abc.ABC):
    """Base class of every adversary.  Subclasses implement ``threat_model`` and ``run``.

    Parameters are keyword-only.  ``Params`` is the attack's frozen dataclass of parameters
    (:mod:`attacks.params`: type, range, choices and a one-line doc per field); ``budget``
    picks their values from the budgets table (:mod:`attacks.budgets`: ``smoke`` for tests,
    ``standard``, ``full``); explicit keyword arguments override them.  Both are validated by
    :func:`attacks.params.resolve`: ``self.config`` is the typed instance, ``self.params`` the
    dict of the values given (what ``result.json`` records).

    ``finding`` declares what the outcome is evidence about: ``"kernel"`` (the default: it
    depends on the scrambling kernel) or ``"system"`` (it does not, e.g. membership inference
    on the organization's internal model measures that model's overfitting); the audit
    reports system findings beside the kernel's verdict, never inside it.
    """

    name: ClassVar[str]
    family: ClassVar[str]
    finding: ClassVar[str] = "kernel"
    Params: ClassVar[type] = NoParams

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:
            raise TypeError(f"{cls.__name__} may not override Attack.__call__ (attacks do not grade themselves)")

    def __init__(self, *, budget: str = "smoke", seed: Optional[int] = None, device: str = "cpu",
                 verbose: bool = True, **params: Any) -> None:
        if budget not in BUDGETS:
            raise ValueError(f"{self.name}: budget must be one of {BUDGETS}, got {budget!r}")
        if getattr(self, "family", None) not in FAMILIES:
            raise TypeError(f"{type(self).__name__}: family must be one of {FAMILIES}")
        if getattr(self, "finding", None) not in FINDINGS:
            raise TypeError(f"{type(self).__name__}: finding must be one of {FINDINGS}")
        merged = {**self.budget_row(budget).params, **params}
        self.config = resolve(self.Params, merged, owner=self.name)
        self.budget, self.device, self.verbose = budget, device, verbose
        self.seed = seed if seed is not None else _secrets.randbits(31)
        self.params = merged

    @property
    def requirements(self) -> Requirements:
        """What the target must offer, given the parameters (subclasses override)."""
        return Requirements()

    @abc.abstractmethod
    def threat_model(self) -> ThreatModel:
        """What this attack assumes of the attacker, given its parameters."""

    @abc.abstractmethod
    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> AttackOutput:
        """The attack proper: sees only ``view``; returns an output for the scorer."""

    def victim_sizes(self) -> dict:
        """Victim sizes this attack needs at its budget (the table's; subclasses may add from params)."""
        return dict(self.budget_row(self.budget).victim_sizes)

    @classmethod
    def budget_row(cls, budget: str) -> Budget:
        """This attack's row of the budgets table at ``budget``; a subclass outside the table
        (e.g. a test's variant of a registered attack) inherits its nearest ancestor's row."""
        for c in cls.__mro__:
            name = c.__dict__.get("name")
            if isinstance(name, str) and name in TABLE:
                return budget_of(name, budget)
        return budget_of(cls.name, budget)

    def unmet(self, victim: Victim) -> Optional[str]:
        """An attack-specific reason it cannot run on ``victim``, or ``None`` (override)."""
        return None

    def applicable(self, victim: Victim) -> tuple[bool, Optional[str]]:
        """Whether this attack can run on ``victim``, and why not: THE applicability rule.

        Built from the requirements, the attack's own :meth:`unmet`, the threat model and the
        victim's capabilities (spec, embeddings, cloud, pool sizes).  ``owsd attack``, the
        audit and :func:`analysis.security.run_attack` all ask this, and ``__call__`` raises
        :class:`RequirementError` with the reason.
        """
        why = self._unmet_requirement(victim) or self.unmet(victim) or self._unmet_threat(victim)
        why = why or self.too_small(victim)
        return why is None, why

    def _unmet_requirement(self, victim: Victim) -> Optional[str]:
        req = self.requirements
        if req.owsd_only and not victim.has_embeddings:
            return (f"{self.name} needs an OWSD-style target (embeddings, spec); "
                    f"got channel {victim.channel.name!r}")
        if req.linear_scrambler and (victim.spec is None or not victim.spec.is_linear()):
            return f"{self.name} needs a linear scrambler (no activations)"
        if req.cloud and victim.cloud is None:
            return f"{self.name} needs a cloud model"
        return None

    def _unmet_threat(self, victim: Victim) -> Optional[str]:
        tm = self.threat_model()
        # a key of the public spec is what key estimation fits; from image pairs or queries it can
        # also fit the channel's linear map without one (e.g. a pixel permutation)
        if self.family == "key-estimation" and victim.spec is None and tm.pair_input != "image":
            return (f"{self.name}: key estimation fits a key of the public scrambler spec; the target "
                    f"{victim.channel.name!r} has no spec")
        if (tm.known_pairs or tm.chosen_queries) and tm.pair_input == "embedding" and not victim.has_embeddings:
            return (f"{self.name}: its threat model gives (embedding, scrambled) pairs or queries; "
                    f"the target {victim.channel.name!r} has no embeddings")
        if (tm.cloud_outputs or tm.queried_model == "cloud") and victim.cloud is None:
            return f"{self.name}: its threat model gives cloud outputs or cloud queries; the target has no cloud"
        return None

    def too_small(self, victim: Victim) -> Optional[str]:
        """Why the victim's data cannot grant the threat model at this budget (``None`` if it can)."""
        tm, have = self.threat_model(), {"private": len(victim.private), "public": len(victim.public)}
        for need, pool, what in ((tm.known_pairs, "private", "known pairs"),
                                 (tm.auxiliary_size, "public", "auxiliary")):
            if need > have[pool]:
                return (f"{self.name}: its threat model at this budget needs {need} {what} images; the victim's "
                        f"{victim.dataset} {pool} pool has {have[pool]} (use a larger dataset)")
        return None

    def __call__(self, victim: Victim, *, scoring: Optional[ScoringConfig] = None) -> AttackResult:
        """Check applicability, run, time and score the attack against ``victim`` (final).

        ``scoring``: the settings of the score's statistics (resamples, permutation nulls), the
        runner's choice; ``None`` takes the attack budget's (:meth:`ScoringConfig.for_budget`).
        """
        scoring = scoring if scoring is not None else ScoringConfig.for_budget(self.budget)
        if not isinstance(scoring, ScoringConfig):
            raise TypeError(f"scoring must be a ScoringConfig, got {type(scoring).__name__}")
        ok, why = self.applicable(victim)
        if not ok:
            raise RequirementError(why)
        threat = self.threat_model()
        rng = np.random.default_rng(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        view = victim.view(threat, rng=np.random.default_rng([self.seed, 1]))
        log.info("attack %s (%s budget, seed %d): %s", self.name, self.budget, self.seed, threat.describe())
        prov = provenance.record()
        t0, c0 = time.perf_counter(), time.process_time()
        output = self.run(view, rng=rng, generator=gen)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        if not isinstance(output, AttackOutput):
            raise TypeError(f"{self.name}.run returned {type(output).__name__}, not an AttackOutput")
        t1, c1 = time.perf_counter(), time.process_time()
        score = scorer_for(output)(output, victim, view, scoring)
        scorer_seconds, scorer_cpu = time.perf_counter() - t1, time.process_time() - c1
        missing = sorted(set(score.metrics) - set(score.chance) - {"n"})
        if score.primary is not None and score.primary not in score.chance:
            raise ValueError(f"scorer for {type(output).__name__} gave no chance level for {score.primary}")
        log.debug("metrics without a chance level: %s", missing)
        target = {"dataset": victim.dataset, "channel": victim.channel.name,
                  "fingerprint": victim.channel.fingerprint,
                  "spec": victim.spec.to_dict() if victim.spec is not None else None}
        return AttackResult(
            attack=self.name, family=self.family, budget=self.budget, threat_model=threat.to_dict(),
            requirements=self.requirements.to_dict(), params=dict(self.params),
            metrics={k: float(v) for k, v in score.metrics.items()}, chance=dict(score.chance),
            ci={k: (float(a), float(b)) for k, (a, b) in score.ci.items()}, p_values=dict(score.p_values),
            primary=score.primary,
            cost={"seconds": seconds, "queries": view.queries_used, "oracle_queries": view.oracle_usage(),
                  "known_pairs": threat.known_pairs,
                  "device": self.device, "cpu_seconds": cpu, "scorer_seconds": scorer_seconds,
                  "scorer_cpu_seconds": scorer_cpu, "total_seconds": seconds + scorer_seconds,
                  "threads": torch.get_num_threads()},
            seed=self.seed, target=target, curves=dict(score.curves), per_sample=dict(score.per_sample),
            raw=output.raw(), finding=self.finding, provenance=prov,
            metric_specs={m: s.to_dict() for m, s in score.specs.items()}, scoring=scoring.to_dict())
