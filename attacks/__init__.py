"""attacks: adversaries against OWSD under one contract (see :mod:`attacks.base`).

Families: key (kernel) estimation, inversion networks, statistical leakage tests.
"""

from attacks.base import (Attack, AttackOutput, AttackResult, LabelPredictions, RequirementError, Score,
                          register_scorer)
from attacks.registry import available_attacks, get_attack, register_attack
from attacks.threat import Requirements, ThreatModel
from attacks.victim import AttackerView, BudgetExceededError, Victim

__all__ = ["Attack", "AttackOutput", "AttackResult", "AttackerView", "BudgetExceededError", "LabelPredictions",
           "RequirementError", "Requirements", "Score", "ThreatModel", "Victim", "available_attacks",
           "get_attack", "register_attack", "register_scorer"]
