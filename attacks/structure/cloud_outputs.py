"""``structure-cloud-outputs``: the same attack from the cloud's output vectors alone.

Threat model: whoever holds the cloud's logs (the provider, or a leak of them) sees, for
``n_traffic`` queries, only the output vectors (probabilities), not the images; it holds
public images of the same kind and knows the public spec.  It sends nothing to the cloud.

On the ``default`` preset the cloud is nearly linear around the texture carrier
(``docs/utility-study.md``), so the centered log-probabilities are, to first order, an affine
image of the standardized signal: they lie close to a 64-dim affine subspace of the 1,000-dim
output space, on an ellipsoid (the image of the pixel-space sphere).  The attack fits that
hull, the ellipsoid's center, and aligns as :mod:`.ciphertext_only` does.  How far that holds
depends on the cloud: the structure measurements (spectral gap, ellipsoid residual) say so.

Example:
    >>> from attacks.structure.ciphertext_only import StructureCiphertextOnly
    >>> StructureCloudOutputs(budget="smoke").threat_model().cloud_outputs
    True
"""

from __future__ import annotations

import numpy as np

from attacks.registry import register_attack
from attacks.structure.ciphertext_only import StructureAttack
from attacks.threat import Requirements
from attacks.victim import AttackerView


@register_attack
class StructureCloudOutputs(StructureAttack):
    """Hull, ellipsoid and alignment from the cloud's output vectors (see the module doc)."""

    name = "structure-cloud-outputs"
    kind = "outputs"

    @property
    def requirements(self) -> Requirements:
        return Requirements(cloud=True)

    def observed(self, view: AttackerView) -> np.ndarray:
        return view.target_outputs
