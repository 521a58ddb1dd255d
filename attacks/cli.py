"""``owsd attack``: run one registered attack alone, list them, or list an attack's parameters.

``--list`` prints the budgets table (:mod:`attacks.budgets`): per attack its family and threat
model, then one line per budget with the victim sizes (private/public/held-out images), the
parameters (``standard`` and ``full`` name only what changes from the budget before) and the
audit variants.

``--param key=value`` (repeatable) sets any field of the attack's parameter dataclass
(:mod:`attacks.params`) over the budget's value; ``--help-params`` lists the fields with their
types, ranges, docs and the budget's values.  ``--scoring key=value`` sets one of the scoring
settings (:class:`attacks.scoring.ScoringConfig`: resamples, permutation nulls), which this
runner chooses, not the attack.  A bad value is one error line (exit 2).

Example:
    owsd attack --list
    owsd attack leak-label-probe --help-params --budget standard
    owsd attack key-known-plaintext --preset linear --seed 0 --dataset digits --budget smoke --out runs/kp
    owsd attack leak-label-probe --param source=outputs --param n_labelled=80 --seed 0 --out runs/probe
    owsd attack leak-distance-mantel --scoring mantel_permutations=9999 --seed 0 --out runs/mantel
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any, Optional

# Imports of the project's modules sit inside the functions, for start-up speed: `owsd` builds every
# command's parser at start (entry points), and the modules a command runs (torch, the attacks) load
# only when it runs.
from owsd.errors import UsageError

log = logging.getLogger(__name__)


def build_victim(a: argparse.Namespace, sizes: dict):
    """The victim of a command-line run, from --key or --preset/--spec (+ --seed)."""
    from attacks.victim import Victim
    from owsd.keys import Key
    from owsd.spec import ScramblerSpec

    key = Key.load(a.key) if a.key else None
    spec = ScramblerSpec.load(a.spec) if getattr(a, "spec", None) else None
    return Victim.build(dataset=a.dataset, data_dir=a.data_dir, key=key, spec=spec,
                        preset=a.preset or ("default" if key is None and spec is None else None),
                        seed=a.seed, cloud=a.cloud, device=a.device, **sizes)


def parse_params(cls, assignments: Optional[list[str]], *, option: str = "--param") -> dict[str, Any]:
    """``--param key=value`` strings -> typed overrides of ``cls``'s parameters (:class:`UsageError`).

    ``cls``: an attack (its ``Params``) or a parameter dataclass itself (e.g. ``ScoringConfig``)."""
    from attacks.params import parse_assignment

    fields_of = getattr(cls, "Params", cls)
    out: dict[str, Any] = {}
    for text in assignments or ():
        try:
            k, v = parse_assignment(fields_of, text)
        except ValueError as exc:
            raise UsageError(f"{option} {text}: {exc}") from None
        out[k] = v
    return out


def scoring_of(budget: str, assignments: Optional[list[str]]):
    """The scoring settings of this run: the budget's, with ``--scoring key=value`` overrides."""
    from attacks.scoring import ScoringConfig

    overrides = parse_params(ScoringConfig, assignments, option="--scoring")
    try:
        return ScoringConfig.for_budget(budget, **overrides)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--scoring: {exc}") from None


def help_params(cls, budget: str) -> str:
    """The parameter fields of ``cls`` with the values ``budget`` gives them."""
    from attacks.params import describe, fields

    row = cls.budget_row(budget)
    lines = [f"{cls.name} ({cls.family}): parameters, with the {budget} budget's values"]
    for f, text in zip(fields(cls.Params), describe(cls.Params)):
        value = row.params.get(f.name, f.default if not f.required else None)
        lines.append(f"  {text}; {budget}: {value!r}")
    for v in row.variants:
        lines.append(f"  audit variant at {budget}: {v}")
    return "\n".join(lines) + "\n"


def _text(v: Any) -> str:
    if isinstance(v, tuple):
        return ",".join(map(str, v)) or "()"
    return str(v)


def _assignments(d: dict) -> str:
    return " ".join(f"{k}={_text(v)}" for k, v in d.items())


def _fill(text: str, width: int, indent: int) -> str:
    return textwrap.fill(text, width, subsequent_indent=" " * indent, break_on_hyphens=False)


def list_attacks(width: int = 100) -> str:
    """The budgets table as text: per attack a header, then one (wrapped) line per budget.

    Example:
        >>> text = list_attacks()
        >>> print(text[text.index("leak-label-probe "):].split("\\n\\n")[0])  # doctest: +NORMALIZE_WHITESPACE
        leak-label-probe (leakage): knows the architecture; does not know the key; sees the scrambled
            images; 50 labelled targets
          smoke     victim 200/16/100  source=scrambled n_labelled=50 k=32; variants: source=outputs
          standard  victim 600/16/200  n_labelled=100 k=64
          full      victim 1000/16/250  n_labelled=200 k=128
    """
    from attacks.budgets import BUDGETS
    from attacks.registry import available_attacks

    blocks = [_fill(
        "Attacks and their budgets (attacks/budgets.py). Victim: private/public/held-out images; "
        "standard and full name only the parameters that change from the budget before; variants: the "
        "configurations the audit runs beside the main one (at standard and full; the leakage suite at every "
        "budget).", width, 0)]
    for name, cls in available_attacks().items():
        tm = cls(budget="smoke", seed=0, verbose=False).threat_model()
        lines = [_fill(f"{name} ({cls.family}): {tm.describe()}", width, 4)]
        before, variants_before = {}, None
        for b in BUDGETS:
            row = cls.budget_row(b)
            sizes = cls(budget=b, seed=0, verbose=False).victim_sizes()
            victim = "/".join(str(sizes[k]) for k in ("n_private", "n_public", "n_heldout") if k in sizes)
            changed = {k: v for k, v in row.params.items() if k not in before or before[k] != v}
            text = f"  {b:9s} victim {victim or '(none)'}  {_assignments(changed) or '(as before)'}"
            if row.variants and row.variants != variants_before:
                text += "; variants: " + " | ".join(_assignments(v) for v in row.variants)
            lines.append(_fill(text, width, 12))
            before, variants_before = row.params, row.variants
        blocks.append("\n".join(lines))
    blocks.append(_list_scoring(width))
    return "\n\n".join(blocks) + "\n"


def _list_scoring(width: int) -> str:
    from attacks.budgets import BUDGETS, SCORING
    from attacks.params import fields
    from attacks.scoring import ScoringConfig

    per_budget = set().union(*SCORING.values())
    same = {f.name: f.default for f in fields(ScoringConfig) if f.name not in per_budget}
    lines = [_fill("scoring (not attack parameters: the runner chooses them, attacks/scoring.py; "
                   "owsd attack --scoring key=value)", width, 4),
             _fill(f"  {'every':9s} {_assignments(same)}", width, 12)]
    lines += [_fill(f"  {b:9s} {_assignments(SCORING[b])}", width, 12) for b in BUDGETS]
    return "\n".join(lines)


def _cmd_attack(a: argparse.Namespace) -> int:
    from attacks.registry import get_attack

    if a.list:
        sys.stdout.write(list_attacks())
        return 0
    if not a.name:
        raise UsageError("name an attack (see `owsd attack --list`)")
    try:
        cls = get_attack(a.name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if a.help_params:
        sys.stdout.write(help_params(cls, a.budget))
        return 0
    if a.key is not None and a.seed is not None:
        raise UsageError("--seed derives a key; it cannot be combined with --key")
    overrides = parse_params(cls, a.param)
    scoring = scoring_of(a.budget, a.scoring)
    try:
        attack = cls(budget=a.budget, seed=a.attack_seed, device=a.device, verbose=not a.quiet, **overrides)
    except (TypeError, ValueError) as exc:  # a combination of --param values the attack rejects
        raise UsageError(f"--param: {exc}") from None
    sizes = attack.victim_sizes()
    if attack.requirements.cloud and a.cloud is None:
        a.cloud = "tiny"
    victim = build_victim(a, sizes)
    ok, why = attack.applicable(victim)
    if not ok:
        raise UsageError(f"{a.name} does not apply to this target: {why}")
    result = attack(victim, scoring=scoring)
    path = result.save(a.out)
    m = result.primary
    line = f"{result.attack}: {m} = {result.metrics.get(m, float('nan')):.4g}" if m else result.attack
    if m and m in result.chance:
        lo, hi = result.ci.get(m, (float("nan"), float("nan")))
        line += f" (95% CI {lo:.4g}-{hi:.4g}; chance {result.chance[m]:.4g})"
    sys.stdout.write(f"{line}\n  cost {result.cost['seconds']:.1f} s, {result.cost['queries']} queries; wrote {path}\n")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from owsd import argtypes
    from owsd.cli import add_key_source
    from owsd.cloud import CLOUD_NAMES
    from owsd.data import DATASETS

    p = sub.add_parser("attack", help="run one attack against a key (see --list)")
    p.add_argument("name", nargs="?", help="attack name")
    p.add_argument("--list", action="store_true", help="list every attack with its budgets table (parameters, victim sizes, variants)")
    p.add_argument("--help-params", action="store_true",
                   help="list the attack's parameters (type, range, doc) with the --budget's values")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="set one of the attack's parameters (repeatable; see --help-params)")
    p.add_argument("--scoring", action="append", metavar="KEY=VALUE",
                   help="set one of the scoring settings, e.g. mantel_permutations=9999 (repeatable; see --list)")
    add_key_source(p)
    p.add_argument("--dataset", default="digits", choices=DATASETS)
    p.add_argument("--data-dir", type=argtypes.input_dir)
    p.add_argument("--cloud", choices=CLOUD_NAMES, help="cloud model (attacks that need one default to tiny)")
    p.add_argument("--budget", default="smoke", choices=("smoke", "standard", "full"))
    p.add_argument("--attack-seed", type=argtypes.nonnegative_int, help="seed of the attack's own randomness")
    p.add_argument("--device", type=argtypes.device, default="cpu")
    p.add_argument("--out", type=argtypes.output_dir, default=Path("owsd-attack"))
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_attack)
