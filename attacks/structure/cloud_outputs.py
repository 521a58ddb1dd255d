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
    requirements = Requirements(cloud=True)
    BUDGETS = {
        "smoke": {"n_traffic": 500, "n_aux": 700, "n_basis": 500, "max_dim": 64, "clusters": 0, "restarts": 2,
                  "n_ref": 0, "pool_sizes": (16, 64), "n_targets": 300, "n_reconstruct": 200, "traffic_curve": (),
                  "aux_curve": ()},
        "standard": {"n_traffic": 4000, "n_aux": 20000, "n_basis": 2000, "max_dim": 64, "clusters": 0,
                     "restarts": 3, "n_ref": 5000, "pool_sizes": (16, 64, 256, 1024), "n_targets": 1000,
                     "n_reconstruct": 1000, "traffic_curve": (), "aux_curve": ()},
        "full": {"n_traffic": 8000, "n_aux": 40000, "n_basis": 3000, "max_dim": 64, "clusters": 0, "restarts": 4,
                 "n_ref": 8000, "pool_sizes": (16, 64, 256, 1024, 4096), "n_targets": 2000,
                 "n_reconstruct": 1000, "traffic_curve": (1000, 4000), "aux_curve": ()},
    }

    def observed(self, view: AttackerView) -> np.ndarray:
        return view.target_outputs
