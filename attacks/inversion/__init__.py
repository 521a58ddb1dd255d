"""Inversion attacks: networks (and an optimizer) that map what the cloud sees back to images.

* ``inversion-paired`` (:mod:`.paired`): decoder trained on pairs under the victim's key;
* ``inversion-surrogate-transfer`` (:mod:`.surrogate_transfer`): decoder trained on public
  images scrambled under many keys of the attacker's own (key augmentation);
* ``inversion-from-outputs`` (:mod:`.from_outputs`): decoder from the cloud's (top-k
  truncated) output vectors to images;
* ``inversion-optimization`` (:mod:`.optimization`): gradient descent on the input through
  a white-box surrogate of the scrambler, with a total-variation prior.

All return :class:`~.outputs.Reconstructions`, graded by :mod:`.scoring` (SSIM, PSNR,
re-identification, plaintext-classifier accuracy); :func:`save_grid` draws the figure.
"""

from attacks.inversion.outputs import Reconstructions
from attacks.inversion.scoring import save_grid, score_reconstructions
# importing the attack modules registers them
from attacks.inversion import from_outputs, optimization, paired, surrogate_transfer  # noqa: F401,E402

__all__ = ["Reconstructions", "save_grid", "score_reconstructions"]
