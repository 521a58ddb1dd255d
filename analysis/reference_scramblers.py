"""Reference scramblers of the calibration battery: kernels whose verdict is known in advance.

Each is a callable for :meth:`analysis.audit.AuditTarget.from_callable` (float images
``(N, C, H, W)`` in [0, 1] -> ``(N, 3, 224, 224)`` in [0, 1], the built-in clouds' input) and
offers ``rekey(seed)``, the same scheme under another key, so that key-distinguishing games
apply (:func:`attacks.leakage.groundtruth.other_key_channel`).  Randomness comes from an
explicit ``torch.Generator`` seeded at construction: the same instance gives the same
stream in every run (these keys are for calibration only: seeds are not secrets).

=========================  ===========================================  ==================
reference                  output                                       kernel verdict
=========================  ===========================================  ==================
:class:`Identity`          the image, resized to 224x224 RGB            fail
:class:`PixelPermutation`  a fixed secret permutation of those pixels   fail
:class:`Blur`              a 9x9 box blur of them                       fail
:class:`AdditiveNoise`     them plus fresh Gaussian noise (sigma)        fail (any sigma here)
:class:`InputIndependent`  fresh uniform noise, ignoring the input      pass
:class:`OneTimePad`        (image + fresh uniform pad) mod 1, per image pass
=========================  ===========================================  ==================

The expected verdicts per family are data: ``analysis/calibration_expected.json``
(:mod:`analysis.calibration`).  Module-level instances serve ``owsd audit --scrambler``:
``analysis.reference_scramblers:input_independent_noise``, ``...:pixel_permutation`` etc.

Example:
    >>> x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> y = PixelPermutation(seed=1)(x)
    >>> tuple(y.shape), bool(torch.equal(y, PixelPermutation(seed=1)(x))), bool(torch.equal(y, PixelPermutation(seed=2)(x)))
    ((2, 3, 224, 224), True, False)
    >>> a, b = InputIndependent(seed=0)(x), OneTimePad(seed=0)(x)
    >>> float(a.min()) >= 0 and float(b.max()) < 1
    True
"""

from __future__ import annotations

import abc
import logging

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

SIZE = 224


def to_rgb(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """Images resized (bilinear) to ``size`` x ``size`` with three channels, in [0, 1]."""
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    return F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


class Reference(abc.ABC):
    """Base: a named reference scrambler with a seed (its "key") and ``rekey``."""

    name = "reference"

    def __init__(self, *, seed: int = 0, size: int = SIZE) -> None:
        self.seed, self.size = int(seed), int(size)
        self._gen = torch.Generator().manual_seed(self.seed)

    def rekey(self, seed: int) -> "Reference":
        """The same scheme under another key."""
        return type(self)(seed=seed, size=self.size)

    @abc.abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Scramble a float batch ``(N, C, H, W)`` in [0, 1]."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed})"


class Identity(Reference):
    """The image itself (no key: ``rekey`` returns the same scheme)."""

    name = "identity"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return to_rgb(x, self.size)


class PixelPermutation(Reference):
    """A fixed permutation of the 3 x 224 x 224 pixels, drawn from the seed (the secret)."""

    name = "pixel-permutation"

    def __init__(self, *, seed: int = 0, size: int = SIZE) -> None:
        super().__init__(seed=seed, size=size)
        self._perm = torch.randperm(3 * size * size, generator=self._gen)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = to_rgb(x, self.size).reshape(len(x), -1)
        return y[:, self._perm].reshape(len(x), 3, self.size, self.size)


class Blur(Reference):
    """A 9 x 9 box blur of the image (no key)."""

    name = "blur"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(to_rgb(x, self.size), 9, stride=1, padding=4, count_include_pad=False)


class AdditiveNoise(Reference):
    """The image plus fresh Gaussian noise of standard deviation ``sigma`` per pixel, clipped to [0, 1]."""

    name = "additive-noise"

    def __init__(self, *, sigma: float = 0.1, seed: int = 0, size: int = SIZE) -> None:
        super().__init__(seed=seed, size=size)
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.sigma = float(sigma)

    def rekey(self, seed: int) -> "AdditiveNoise":
        return AdditiveNoise(sigma=self.sigma, seed=seed, size=self.size)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = to_rgb(x, self.size)
        return (y + self.sigma * torch.randn(y.shape, generator=self._gen)).clamp(0, 1)


class InputIndependent(Reference):
    """Fresh uniform noise that ignores the input: nothing of the image is sent."""

    name = "input-independent-noise"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rand(len(x), 3, self.size, self.size, generator=self._gen)


class OneTimePad(Reference):
    """``(image + pad) mod 1`` with a fresh uniform pad per image: perfectly secret, uniform output."""

    name = "one-time-pad"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = to_rgb(x, self.size)
        return torch.remainder(y + torch.rand(y.shape, generator=self._gen), 1.0)


#: instances for ``owsd audit --scrambler analysis.reference_scramblers:NAME`` (seeds: calibration only)
identity = Identity(seed=0)
pixel_permutation = PixelPermutation(seed=0)
blur = Blur(seed=0)
additive_noise_low = AdditiveNoise(sigma=0.1, seed=0)
additive_noise_high = AdditiveNoise(sigma=1.0, seed=0)
input_independent_noise = InputIndependent(seed=0)
one_time_pad = OneTimePad(seed=0)


def make(name: str) -> Reference:
    """A fresh instance of the module-level reference ``name`` (same class, parameters and seed).

    Example:
        >>> make("additive_noise_high").sigma
        1.0
    """
    proto = globals().get(name)
    if not isinstance(proto, Reference):
        names = sorted(k for k, v in globals().items() if isinstance(v, Reference))
        raise ValueError(f"unknown reference scrambler {name!r}; available: {names}")
    if isinstance(proto, AdditiveNoise):
        return AdditiveNoise(sigma=proto.sigma, seed=proto.seed, size=proto.size)
    return type(proto)(seed=proto.seed, size=proto.size)
