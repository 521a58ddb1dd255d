"""Equality leakage: is scrambling deterministic, and what does it reveal across requests?

``leak-equality``: the cloud keeps what it has seen (the targets).  The challenger (the
scorer, on the victim's side) later has the victim send ``n_resend`` of its private images
*again*, unchanged, mixed with ``n_new`` never-sent images.  The attack's rule links each new
request to the nearest target it saw (Euclidean distance in the scrambled pixels, or in the
log cloud outputs).  Reported:

* ``resend_auc`` (primary): telling a repeated request from a new one by that distance
  (chance 0.5, bootstrap CI, Mann-Whitney p-value);
* ``link_accuracy``: the repeated request is linked to the right earlier one (chance 1/n);
* ``exact_match_rate``: the repeat is byte-identical to the first send (determinism;
  chance 0 for a randomized scheme, Wilson CI).

Design choice: the repeats are drawn by the scorer from the victim's ground truth (the cloud
cannot choose what the victim re-sends), not through a chosen-query oracle; the attack only
fixes its linking rule before seeing them.

Example:
    >>> import warnings
    >>> from attacks.controls import permutation_victim
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = permutation_victim(dataset="digits", n_private=50, n_public=8, n_heldout=20)
    >>> r = Equality(budget="smoke", seed=0, verbose=False, n_resend=10, n_new=10)(v)
    >>> r.metrics["exact_match_rate"], r.metrics["resend_auc"]
    (1.0, 1.0)
"""

from __future__ import annotations

from attacks.leakage.distance import LinkingAttack
from attacks.registry import register_attack


@register_attack
class Equality(LinkingAttack):
    """Detects and links exact re-sends of images the cloud has already seen."""

    name = "leak-equality"
    resend = "exact"
