"""Adversaries I: key (kernel) estimation under known-plaintext, chosen-plaintext and
ciphertext-only threat models (see ``docs/key-estimation.md``).

Importing this package registers ``key-known-plaintext``, ``key-chosen-plaintext`` and
``key-ciphertext-only`` and the scorers of their outputs.
"""

from attacks.key_estimation import scoring  # noqa: F401  (registers the scorers)
from attacks.key_estimation.chosen_plaintext import ChosenPlaintextKeyEstimation
from attacks.key_estimation.known_plaintext import KnownPlaintextKeyEstimation
from attacks.key_estimation.outputs import KeyEstimate, Matching

__all__ = ["ChosenPlaintextKeyEstimation", "KeyEstimate", "KnownPlaintextKeyEstimation", "Matching"]
from attacks.key_estimation.ciphertext_only import CiphertextOnlyKeyEstimation  # noqa: E402

__all__ += ["CiphertextOnlyKeyEstimation"]
