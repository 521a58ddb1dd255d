"""Structure attacks: what a passive observer learns from the geometry of the traffic alone.

A scrambler without activations puts every scrambled image of a key in one affine subspace
of the embedding's dimension, all at one distance from the carrier; the cloud's outputs of
them lie near an ellipsoid in a subspace of the same dimension.  From that structure alone
(no pairs, no chosen queries, no encoder) these attacks recover every item's embedding up to
one rotation, find the rotation by matching distributions with their own embedding of public
data, then re-identify and reconstruct (``docs/ciphertext-only.md``).

One idea per module: :mod:`.hull` (affine hull, intrinsic dimension), :mod:`.geometry`
(center, Tyler whitening), :mod:`.own_embedding` (the attacker's own PCA), :mod:`.alignment`
(Gromov-Wasserstein initialization, iterative matching, flip repair), :mod:`.pipeline`,
:mod:`.outputs`, :mod:`.scoring` (the scorer), :mod:`.ciphertext_only` and
:mod:`.cloud_outputs` (the registered attacks ``structure-ciphertext-only`` and
``structure-cloud-outputs``).

Example:
    >>> from attacks.registry import available_attacks
    >>> sorted(n for n in available_attacks() if n.startswith("structure-"))
    ['structure-ciphertext-only', 'structure-cloud-outputs']
"""

from attacks.structure import scoring  # noqa: F401  (registers the scorer)
from attacks.structure.ciphertext_only import StructureCiphertextOnly
from attacks.structure.cloud_outputs import StructureCloudOutputs
from attacks.structure.outputs import StructureMatcher, StructureRecovery

__all__ = ["StructureCiphertextOnly", "StructureCloudOutputs", "StructureMatcher", "StructureRecovery"]
