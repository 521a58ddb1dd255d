"""Threat models enforced: every oracle of the attacker's view is metered, with one over-budget error.

Positive control: an attack that stays within its declared budget runs, and its counts
appear in ``cost["oracle_queries"]``.  Negative control: one that asks for more (of the
scrambler, the cloud, or the internal model) raises :class:`BudgetExceededError`.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

from attacks import BudgetExceededError
from attacks.base import Attack, LabelPredictions
from attacks.controls import identity_victim
from attacks.inversion.from_outputs import InversionFromOutputs
from attacks.leakage.membership import MembershipLoss
from attacks.oracles import ORACLES, QueryMeter
from attacks.params import param
from attacks.threat import ThreatModel
from attacks.victim import Victim


@pytest.fixture(scope="module")
def victim():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Victim.build(dataset="digits", preset="linear", seed=0, n_private=40, n_public=80, n_heldout=8,
                            cloud="tiny")


@dataclass(frozen=True, kw_only=True)
class SpenderParams:
    oracle: str = param(doc="the oracle queried", choices=("scramble", "cloud"))
    declared: int = param(doc="queries the threat model grants", ge=0)
    used: int = param(doc="queries sent", ge=0)


class Spender(Attack):
    """Declares ``declared`` queries to one oracle and sends ``used`` (test-only; not registered)."""

    name, family = "test-spender", "leakage"
    Params = SpenderParams

    def threat_model(self) -> ThreatModel:
        n = self.params["declared"]
        if self.params["oracle"] == "scramble":
            return ThreatModel(chosen_queries=n, pair_input="image")
        return ThreatModel(model_queries=n, queried_model="cloud" if n else None)

    def run(self, view, *, rng, generator):
        k = self.params["used"]
        if self.params["oracle"] == "scramble":
            view.oracle(np.zeros((k, 1, 8, 8), np.uint8))
        else:
            view.cloud.predict(np.zeros((k, 3, 224, 224), np.float32))
        return LabelPredictions(np.zeros(view.num_targets, int), np.arange(view.num_targets))


@pytest.mark.parametrize("oracle", ["scramble", "cloud"])
def test_queries_within_budget_are_counted_in_the_cost(victim, oracle):
    r = Spender(oracle=oracle, declared=5, used=3, seed=0, verbose=False)(victim)
    assert r.cost["oracle_queries"] == {o: (3 if o == oracle else 0) for o in ORACLES}
    assert r.cost["queries"] == (3 if oracle == "scramble" else 0)


@pytest.mark.parametrize("oracle", ["scramble", "cloud"])
def test_overspending_an_oracle_raises_the_one_budget_error(victim, oracle):
    with pytest.raises(BudgetExceededError, match=f"{oracle} oracle: the threat model grants 5 queries"):
        Spender(oracle=oracle, declared=5, used=6, seed=0, verbose=False)(victim)


@pytest.mark.parametrize("oracle", ["scramble", "cloud"])
def test_undeclared_queries_are_refused(victim, oracle):
    with pytest.raises(BudgetExceededError, match=f"{oracle} oracle: the threat model grants no queries"):
        Spender(oracle=oracle, declared=0, used=1, seed=0, verbose=False)(victim)


def test_the_cloud_oracle_exposes_no_model(victim):
    view = victim.view(ThreatModel(cloud_outputs=True), rng=np.random.default_rng(0))
    assert view.cloud.num_outputs == victim.cloud.num_outputs and not hasattr(view.cloud, "module")
    assert view.target_outputs is not None  # observed traffic is not a query
    assert view.oracle_usage() == {"scramble": 0, "cloud": 0, "internal": 0}


def test_inversion_from_outputs_declares_and_pays_its_cloud_queries(victim):
    a = InversionFromOutputs(aux=70, copies=2, n_keys=2, epochs=1, max_targets=10, seed=0, verbose=False)
    tm = a.threat_model()
    assert tm.queried_model == "cloud" and tm.model_queries == 140
    r = a(victim)
    assert r.cost["oracle_queries"]["cloud"] == 140 and "140 queries to the cloud model" in tm.describe()


class StingyMembership(MembershipLoss):
    """The LOSS attack declaring fewer internal-model queries than it sends (test-only)."""

    name = "test-stingy-membership"

    def threat_model(self) -> ThreatModel:
        return dataclasses.replace(super().threat_model(), model_queries=5)


def test_internal_model_queries_are_metered():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = identity_victim(dataset="digits", n_private=80, n_public=8, n_heldout=40, cloud="tiny")
    r = MembershipLoss(budget="smoke", seed=0, verbose=False)(v)
    # one query per labelled target: 200 granted, 80 private images to label
    assert r.threat_model["model_queries"] == 200 and r.cost["oracle_queries"]["internal"] == 80
    with pytest.raises(BudgetExceededError, match="internal oracle: the threat model grants 5 queries"):
        StingyMembership(budget="smoke", seed=0, verbose=False)(v)


def test_meter_refuses_without_counting():
    m = QueryMeter("scramble", 2)
    with pytest.raises(BudgetExceededError):
        m.charge(3)
    assert m.used == 0
    m.charge(2)
    assert m.used == 2
    with pytest.raises(ValueError):
        QueryMeter("cloud", -1)
