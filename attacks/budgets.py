"""The one budgets table: attack -> budget -> parameters, victim sizes and audit variants.

``smoke`` is for tests (seconds), ``standard`` and ``full`` certify (see
:mod:`analysis.verdicts`).  Each :class:`Budget` gives every required field of the attack's
parameter dataclass (:mod:`attacks.params`), the victim sizes it needs (``n_private``,
``n_public``, ``n_heldout``; an attack may compute more from its parameters), and the other
configurations the audit runs beside the main one (``variants``, parameter overrides; the
audit runs them at ``standard`` and ``full``, the leakage suite at every budget).  The
settings of the scorers' statistics per budget (:data:`SCORING`) are not attack parameters:
the runner passes them (:mod:`attacks.scoring`).  The
table is checked when an attack registers (:func:`check_budget`): unknown attacks, budgets,
sizes or parameters, and parameter values their dataclass rejects, fail at import.

Example:
    >>> budget_of("leak-label-probe", "standard").params["n_labelled"]
    100
    >>> budget_of("leak-label-probe", "standard").variants
    ({'source': 'outputs'},)
    >>> budget_of("not-registered", "smoke")
    Budget(params={}, victim_sizes={}, variants=())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

BUDGETS = ("smoke", "standard", "full")
SIZE_KEYS = ("n_private", "n_public", "n_heldout")


@dataclass(frozen=True)
class Budget:
    """One attack at one budget: its parameters, victim sizes and audit variants."""

    params: dict = field(default_factory=dict)
    victim_sizes: dict = field(default_factory=dict)
    variants: tuple = ()


def _sizes(private: int, public: int, heldout: int) -> dict:
    return {"n_private": private, "n_public": public, "n_heldout": heldout}


def _table(params: dict, sizes: dict, variants: tuple = ()) -> dict[str, Budget]:
    return {b: Budget(params[b], sizes.get(b, {}), variants) for b in BUDGETS}


# --- key estimation -------------------------------------------------------------------
_FIT = {"method": "auto", "structure": "spec", "ridge": -1.0, "lr": 0.1}
_FIT_BUDGET = {"smoke": dict(steps=4, restarts=1, batch_size=8, n_invert=8, invert_steps=3),
               "standard": dict(steps=150, restarts=2, batch_size=32, n_invert=32, invert_steps=40),
               "full": dict(steps=600, restarts=4, batch_size=32, n_invert=64, invert_steps=100)}
_KP = {"smoke": 24, "standard": 128, "full": 512}
_CP = {"smoke": 64, "standard": 64, "full": 512}
_KEY_SIZES_HELDOUT = {"smoke": 32, "standard": 64, "full": 128}

KEY_ESTIMATION = {
    "key-known-plaintext": _table(
        {b: {**_FIT, "n_pairs": _KP[b], "pair_input": "embedding", **_FIT_BUDGET[b]} for b in BUDGETS},
        {"smoke": _sizes(64, 16, 32), "standard": _sizes(256, 16, 64), "full": _sizes(1024, 16, 128)}),
    "key-chosen-plaintext": _table(
        {b: {**_FIT, "n_queries": _CP[b], "query_input": "embedding", "query_scale": 1.0, **_FIT_BUDGET[b]}
         for b in BUDGETS},
        {b: _sizes(16, 16, _KEY_SIZES_HELDOUT[b]) for b in BUDGETS}),
    "key-ciphertext-only": _table(
        {"smoke": {"n_aux": 256, "n_keys": 3, "n_train": 32, "grid": 2, "pixels_per_region": 4096, "restarts": 2,
                   "refine": 3, "pool_sizes": (16, 32), "trials": 1},
         "standard": {"n_aux": 1000, "n_keys": 12, "n_train": 64, "grid": 2, "pixels_per_region": 8192,
                      "restarts": 4, "refine": 5, "pool_sizes": (16, 32, 64, 128, 256), "trials": 2},
         "full": {"n_aux": 4000, "n_keys": 32, "n_train": 96, "grid": 2, "pixels_per_region": 16384,
                  "restarts": 8, "refine": 10, "pool_sizes": (16, 32, 64, 128, 256, 512), "trials": 4}},
        {"smoke": _sizes(32, 256, 8), "standard": _sizes(256, 1000, 8), "full": _sizes(512, 4000, 8)}),
}

# --- inversion --------------------------------------------------------------------------
#: early stopping of the attacks that train on their own synthetic pairs (surrogate transfer,
#: inversion from outputs) at the standard and full budgets: hold out 10% of the training
#: examples, stop after ``patience`` epochs without a lower validation BCE, keep the best
#: weights.  Paired inversion keeps every known pair for training and no early stopping.
EARLY_STOP: dict = {"patience": 5, "val_fraction": 0.1}

_NET_SMOKE = dict(epochs=40, batch_size=32, lr=2e-3, pool=16, latent=128, hidden=256, conv_width=0, width=16,
                  max_seconds=0.0, max_targets=0, patience=0, val_fraction=0.1)
_NET_STANDARD = dict(epochs=60, batch_size=64, lr=2e-3, pool=16, latent=256, hidden=512, conv_width=0, width=32,
                     max_seconds=0.0, max_targets=1000, patience=0, val_fraction=0.1)
_ST_SMOKE = dict(aux=300, n_keys=16, key_source="random", copies=2, knows_encoder=False, epochs=30, batch_size=32,
                 lr=2e-3, pool=16, latent=128, hidden=256, conv_width=0, width=16, max_seconds=0.0,
                 max_targets=300, patience=0, val_fraction=0.1)
_ST_STANDARD = dict(_ST_SMOKE, aux=1000, n_keys=64, copies=3, epochs=40, batch_size=64, pool=16, latent=256,
                    hidden=512, width=32, max_targets=1000, **EARLY_STOP)
_FO_SMOKE = dict(mode="own-keys", top_k=0, aux=300, n_keys=16, key_source="random", copies=2, knows_encoder=False,
                 pairs=300, epochs=30, batch_size=32, lr=2e-3, pool=16, latent=128, hidden=256, conv_width=0,
                 width=16, max_seconds=0.0, max_targets=300, patience=0, val_fraction=0.1)
_FO_STANDARD = dict(_FO_SMOKE, aux=1000, n_keys=64, copies=3, pairs=2000, epochs=40, batch_size=64, latent=256,
                    hidden=512, width=32, max_targets=1000, **EARLY_STOP)
_OPT = dict(surrogate="least-squares", surrogate_model=None, pairs=300, aux=100, n_pixels=4096, ridge=1e-4,
            steps=150, lr=0.1, tv_weight=0.05, batch_size=128, max_targets=200)
_PAIRED_SIZES = {"smoke": _sizes(500, 300, 128), "standard": _sizes(3000, 1000, 500), "full": _sizes(10000, 2000, 1000)}
_OWN_KEY_SIZES = {"smoke": _sizes(300, 300, 128), "standard": _sizes(1000, 1000, 500), "full": _sizes(2000, 2000, 1000)}

INVERSION = {
    "inversion-paired": _table(
        {"smoke": {"pairs": 300, **_NET_SMOKE}, "standard": {"pairs": 2000, **_NET_STANDARD},
         "full": {"pairs": 8000, **dict(_NET_STANDARD, epochs=100, max_targets=2000)}},
        _PAIRED_SIZES),
    "inversion-surrogate-transfer": _table(
        {"smoke": _ST_SMOKE, "standard": _ST_STANDARD,
         "full": dict(_ST_STANDARD, aux=2000, n_keys=256, copies=4, epochs=60, max_targets=2000)},
        _OWN_KEY_SIZES),
    "inversion-from-outputs": _table(
        {"smoke": _FO_SMOKE, "standard": _FO_STANDARD,
         "full": dict(_FO_STANDARD, aux=2000, n_keys=256, copies=4, pairs=8000, epochs=60, max_targets=2000)},
        {"smoke": _sizes(600, 300, 128), "standard": _sizes(3000, 1000, 500), "full": _sizes(10000, 2000, 1000)}),
    "inversion-optimization": _table(
        {"smoke": _OPT, "standard": dict(_OPT, pairs=2000, steps=300, max_targets=1000),
         "full": dict(_OPT, pairs=8000, steps=500, n_pixels=16384, max_targets=2000)},
        _PAIRED_SIZES),
}

# --- structure (victim sizes follow from the parameters) --------------------------------
_STRUCT_SMOKE = {"n_traffic": 500, "n_aux": 700, "max_dim": 64, "clusters": 0, "restarts": 2, "n_ref": 0,
                 "pool_sizes": (16, 64), "n_targets": 300, "n_reconstruct": 200, "traffic_curve": (), "aux_curve": ()}
_STRUCT_STANDARD = {"n_traffic": 4000, "n_aux": 20000, "max_dim": 64, "clusters": 0, "restarts": 3, "n_ref": 5000,
                    "pool_sizes": (16, 64, 256, 1024), "n_targets": 1000, "n_reconstruct": 1000, "aux_curve": ()}
_STRUCT_FULL = {"n_traffic": 8000, "n_aux": 40000, "max_dim": 64, "clusters": 0, "restarts": 4, "n_ref": 8000,
                "pool_sizes": (16, 64, 256, 1024, 4096), "n_targets": 2000, "n_reconstruct": 1000}

STRUCTURE = {
    "structure-ciphertext-only": _table(
        {"smoke": dict(_STRUCT_SMOKE, n_basis=256),
         "standard": dict(_STRUCT_STANDARD, n_basis=512, traffic_curve=(2000,)),
         "full": dict(_STRUCT_FULL, n_basis=768, traffic_curve=(256, 1000, 4000), aux_curve=(1000, 4000))}, {}),
    "structure-cloud-outputs": _table(
        {"smoke": dict(_STRUCT_SMOKE, n_basis=500),
         "standard": dict(_STRUCT_STANDARD, n_basis=2000, traffic_curve=()),
         "full": dict(_STRUCT_FULL, n_basis=3000, traffic_curve=(1000, 4000), aux_curve=())}, {}),
}

# --- leakage (one victim serves the whole suite) ----------------------------------------
#: victim sizes shared by every leakage test
LEAKAGE_VICTIM_SIZES: dict[str, dict] = {
    "smoke": _sizes(200, 16, 100), "standard": _sizes(600, 16, 200), "full": _sizes(1000, 16, 250)}
_OUTPUTS = ({"source": "outputs"},)
_PROBE = {"smoke": {"source": "scrambled", "n_labelled": 50, "k": 32},
          "standard": {"source": "scrambled", "n_labelled": 100, "k": 64},
          "full": {"source": "scrambled", "n_labelled": 200, "k": 128}}
_DISTINGUISH = {"smoke": {"k": 16, "n_challenge": 100}, "standard": {"k": 32, "n_challenge": 200},
                "full": {"k": 64, "n_challenge": 250}}
_MEMBERSHIP = {"smoke": {"n_known": 200}, "standard": {"n_known": 600}, "full": {"n_known": 1000}}
_SHADOWS = {"smoke": 8, "standard": 16, "full": 32}

LEAKAGE = {
    "leak-label-probe": _table(_PROBE, LEAKAGE_VICTIM_SIZES, _OUTPUTS),
    "leak-label-mlp": _table(_PROBE, LEAKAGE_VICTIM_SIZES, _OUTPUTS),
    "leak-clustering": _table(
        {"smoke": {"source": "outputs", "n_clusters": 10, "k": 16, "n_init": 4},
         "standard": {"source": "outputs", "n_clusters": 10, "k": 32, "n_init": 10},
         "full": {"source": "outputs", "n_clusters": 10, "k": 32, "n_init": 20}},
        LEAKAGE_VICTIM_SIZES, ({"source": "scrambled"},)),
    "leak-distance-mantel": _table(
        {"smoke": {"source": "scrambled", "n_pairs_items": 100},
         "standard": {"source": "scrambled", "n_pairs_items": 200},
         "full": {"source": "scrambled", "n_pairs_items": 400}},
        LEAKAGE_VICTIM_SIZES, _OUTPUTS),
    "leak-near-duplicate": _table(
        {"smoke": {"source": "scrambled", "n_resend": 60, "n_new": 60},
         "standard": {"source": "scrambled", "n_resend": 150, "n_new": 150},
         "full": {"source": "scrambled", "n_resend": 300, "n_new": 250}}, LEAKAGE_VICTIM_SIZES),
    "leak-equality": _table(
        {"smoke": {"source": "scrambled", "n_resend": 50, "n_new": 50},
         "standard": {"source": "scrambled", "n_resend": 100, "n_new": 100},
         "full": {"source": "scrambled", "n_resend": 200, "n_new": 200}}, LEAKAGE_VICTIM_SIZES),
    "leak-key-distinguish": _table(_DISTINGUISH, LEAKAGE_VICTIM_SIZES),
    "leak-noise-distinguish": _table(_DISTINGUISH, LEAKAGE_VICTIM_SIZES),
    "leak-membership-loss": _table(_MEMBERSHIP, LEAKAGE_VICTIM_SIZES),
    "leak-membership-shadow": _table({b: {**_MEMBERSHIP[b], "n_shadow": _SHADOWS[b]} for b in BUDGETS},
                                     LEAKAGE_VICTIM_SIZES),
    "leak-mutual-info": _table(
        {"smoke": {"source": "scrambled", "k": 8}, "standard": {"source": "scrambled", "k": 8},
         "full": {"source": "scrambled", "k": 16}},
        LEAKAGE_VICTIM_SIZES, _OUTPUTS),
}

# --- scoring (chosen by the runner: attacks/scoring.py) ------------------------------------
#: the budget-dependent settings of the scorers' statistics (:class:`attacks.scoring.ScoringConfig`;
#: its other fields have one default for every budget).  Not attack parameters: the runner
#: passes them to :meth:`attacks.base.Attack.__call__`.
SCORING: dict[str, dict] = {
    "smoke": {"cluster_permutations": 200, "mantel_permutations": 499, "mantel_bootstrap": 100,
              "tpr_bootstrap": 200, "mi_permutations": 50, "mi_coords": 4},
    "standard": {"cluster_permutations": 1000, "mantel_permutations": 999, "mantel_bootstrap": 200,
                 "tpr_bootstrap": 500, "mi_permutations": 200, "mi_coords": 8},
    "full": {"cluster_permutations": 2000, "mantel_permutations": 1999, "mantel_bootstrap": 500,
             "tpr_bootstrap": 1000, "mi_permutations": 500, "mi_coords": 16}}

#: THE table
TABLE: dict[str, dict[str, Budget]] = {**KEY_ESTIMATION, **INVERSION, **STRUCTURE, **LEAKAGE}


def budget_of(attack: str, budget: str) -> Budget:
    """The table's entry (an empty :class:`Budget` for an attack outside the table, e.g. in tests)."""
    if budget not in BUDGETS:
        raise ValueError(f"{attack}: budget must be one of {BUDGETS}, got {budget!r}")
    return TABLE.get(attack, {}).get(budget, Budget())


def configurations(attack: str, budget: str) -> list[dict]:
    """The main configuration (no overrides) and the table's variants of ``attack`` at ``budget``."""
    return [{}] + [dict(v) for v in budget_of(attack, budget).variants]


def check_budget(attack: str, resolve: Callable[[dict], Any]) -> None:
    """Check ``attack``'s rows of the table; ``resolve`` validates a parameter dict (raises)."""
    rows = TABLE.get(attack)
    if rows is None:
        raise ValueError(f"attack {attack!r} has no row in the budgets table (attacks/budgets.py)")
    if set(rows) != set(BUDGETS):
        raise ValueError(f"budgets table: {attack} must give exactly the budgets {BUDGETS}, got {sorted(rows)}")
    for b, row in rows.items():
        bad = sorted(set(row.victim_sizes) - set(SIZE_KEYS))
        if bad or any(not isinstance(v, int) or v < 1 for v in row.victim_sizes.values()):
            raise ValueError(f"budgets table: {attack}/{b}: victim sizes must be positive {SIZE_KEYS}, "
                             f"got {row.victim_sizes}")
        for p in (row.params, *({**row.params, **v} for v in row.variants)):
            try:
                resolve(p)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"budgets table: {attack}/{b}: {exc}") from None
        if any(not v or all(row.params.get(k) == x for k, x in v.items()) for v in row.variants):
            raise ValueError(f"budgets table: {attack}/{b}: a variant must change a parameter, got {row.variants}")


def check_table(registered: set[str]) -> None:
    """Every row of the table names a registered attack."""
    stray = sorted(set(TABLE) - registered)
    if stray:
        raise ValueError(f"budgets table: rows for unregistered attacks {stray}")
