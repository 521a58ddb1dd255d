"""Statistical leakage tests: what an honest-but-curious cloud learns without reconstructing.

Importing this package registers the ``leak-*`` attacks (see :mod:`attacks.registry`) and
the scorers of their output types (:mod:`attacks.leakage.scoring`).  Every test reports its
statistic, chance level, a bootstrap CI and/or a permutation (or exact) p-value;
:func:`run_all_leakage_tests` + :func:`leakage_table` run the suite with Benjamini-Hochberg
control across tests.  See ``docs/leakage.md``.

Example:
    >>> from attacks.registry import available_attacks
    >>> sorted(n for n in available_attacks() if n.startswith("leak-"))[:3]
    ['leak-clustering', 'leak-distance-mantel', 'leak-equality']
"""

from attacks.leakage import scoring  # noqa: F401  (registers the scorers)
from attacks.leakage.distance import DistanceMantel, NearDuplicate
from attacks.leakage.distinguish import KeyDistinguish, NoiseDistinguish
from attacks.leakage.equality import Equality
from attacks.leakage.groundtruth import internal_model_for, with_null_internal_model
from attacks.leakage.label import Clustering, LabelMLP, LabelProbe
from attacks.leakage.membership import MembershipLoss, MembershipShadow, save_roc
from attacks.leakage.mutual_info import MutualInfo
from attacks.leakage.suite import (SUITE, ci_excludes_chance, format_table, leakage_table, leakage_victim_sizes,
                                   run_all_leakage_tests)

__all__ = ["Clustering", "DistanceMantel", "Equality", "KeyDistinguish", "LabelMLP", "LabelProbe",
           "MembershipLoss", "MembershipShadow", "MutualInfo", "NearDuplicate", "NoiseDistinguish", "SUITE",
           "ci_excludes_chance", "format_table", "internal_model_for", "leakage_table", "leakage_victim_sizes",
           "run_all_leakage_tests", "save_roc", "with_null_internal_model"]
