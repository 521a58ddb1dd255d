"""Optimization-based inversion: gradient descent on the image through a white-box surrogate.

Given a differentiable surrogate of the victim's pipeline (image -> scrambled pixels), the
attack solves, for each scrambled target ``y``,

    min_x  ||S(x) - y||^2 / var(y)  +  tv_weight * TV(x),     x = sigmoid(z) in [0, 1],

by Adam on ``z`` from the mean image, with an anisotropic total-variation prior ``TV``.
Only ``n_pixels`` random scrambled pixels are compared (enough to pin a 64-dim embedding,
and cheap).  Surrogates (``surrogate=``):

* ``least-squares`` (default; threat: ``pairs`` known (image, scrambled) pairs): a key
  estimate fitted by the attacker itself.  It fits a PCA (``spec.embedding_dim``
  components, or 64) on the pair images and a least-squares linear map from those
  coefficients to the scrambled pixels, through the public output map (logit for
  ``sigmoid``): exact for the ``linear`` preset up to the encoder mismatch, a linear
  approximation otherwise (:class:`LinearSurrogate`);
* ``known-key`` (upper bound; threat: knows the key and the encoder): the victim's own
  scrambler and encoder (:class:`PipelineSurrogate`);
* ``given``: any object with ``predict(images) -> (N, m)`` and ``observe(scrambled) -> (N, m)``
  passed as ``surrogate_model=`` (e.g. a :class:`PipelineSurrogate` around a scrambler whose
  weights a key-estimation attack estimated).

Example:
    >>> import warnings
    >>> from attacks.victim import Victim
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     v = Victim.build(dataset="digits", preset="linear", seed=0, n_private=120, n_public=60, n_heldout=40)
    >>> r = InversionOptimization(pairs=80, steps=20, seed=0, verbose=False)(v)
    >>> r.metrics["n"]
    40.0
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from attacks.base import Attack, RequirementError
from attacks.inversion.common import output_map, select_targets, unit_images
from attacks.inversion.outputs import Reconstructions
from attacks.params import param
from attacks.registry import register_attack
from attacks.threat import ThreatModel
from attacks.victim import AttackerView
from owsd.encoder import Encoder, PCAEncoder, make_encoder
from owsd.scrambler import Scrambler

log = logging.getLogger(__name__)

SURROGATES = ("least-squares", "known-key", "given")
_EPS = 0.5 / 255.0


class Surrogate(Protocol):
    """A differentiable model of the victim's pipeline on a fixed set of scrambled pixels."""

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Predicted scrambled pixels ``(N, m)`` in [0, 1] for images ``(N, C, H, W)`` in [0, 1]."""

    def observe(self, scrambled: np.ndarray) -> torch.Tensor:
        """The same ``m`` pixels of real scrambled images (uint8 or [0, 1]) as floats in [0, 1]."""


def _pixels_of(scrambled: np.ndarray, pixels: np.ndarray) -> torch.Tensor:
    a = np.asarray(scrambled).reshape(len(scrambled), -1)[:, pixels]
    return torch.from_numpy(a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32))


def _to_linear(y: torch.Tensor, normalization: Optional[str], gain: float) -> torch.Tensor:
    return torch.logit(y.clamp(_EPS, 1 - _EPS)) / gain if normalization == "sigmoid" else y


def _from_linear(s: torch.Tensor, normalization: Optional[str], gain: float) -> torch.Tensor:
    return torch.sigmoid(gain * s) if normalization == "sigmoid" else s


def torch_encoder(encoder: Encoder, *, device: str = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
    """A differentiable version of a fitted encoder: images ``(N, C, H, W)`` -> embeddings."""
    as_t = lambda a: torch.from_numpy(np.asarray(a, np.float32)).to(device)  # noqa: E731
    mean_c, std_c = as_t(encoder.code_mean), as_t(encoder.code_std)
    if isinstance(encoder, PCAEncoder):
        mu, comp = as_t(encoder.mean), as_t(encoder.components)
        return lambda x: ((x.reshape(len(x), -1) - mu) @ comp.T - mean_c) / std_c
    net = getattr(encoder, "net", None)
    if net is None:
        raise TypeError(f"no differentiable form of encoder {type(encoder).__name__}")
    return lambda x: (net.encoder(x.reshape(len(x), -1)) - mean_c) / std_c


class LinearSurrogate:
    """A least-squares key estimate: own-PCA coefficients -> (linearized) scrambled pixels."""

    def __init__(self, encoder: PCAEncoder, weight: torch.Tensor, bias: torch.Tensor, pixels: np.ndarray,
                 normalization: Optional[str], gain: float, device: str = "cpu") -> None:
        self.encode = torch_encoder(encoder, device=device)
        self.weight, self.bias, self.pixels = weight.to(device), bias.to(device), pixels
        self.normalization, self.gain = normalization, gain

    @classmethod
    def fit(cls, images: np.ndarray, scrambled: np.ndarray, *, dim: int, n_pixels: int, ridge: float,
            rng: np.random.Generator, normalization: Optional[str], gain: float,
            device: str = "cpu") -> "LinearSurrogate":
        """Fit on known pairs: ``images`` uint8 ``(N, C, H, W)``, ``scrambled`` ``(N, 3, H', W')``."""
        flat = images.reshape(len(images), -1).astype(np.float32) / 255.0
        dim = min(dim, len(flat) - 1, flat.shape[1])
        enc = make_encoder("pca", dim).fit(flat)
        total = int(np.prod(scrambled.shape[1:]))
        pixels = np.sort(rng.choice(total, min(n_pixels, total), replace=False))
        e = torch.from_numpy(enc.encode(flat)).double()
        g = _to_linear(_pixels_of(scrambled, pixels), normalization, gain).double()
        e1 = torch.cat([e, torch.ones(len(e), 1, dtype=e.dtype)], 1)
        a = e1.T @ e1
        a += ridge * torch.trace(a) / len(a) * torch.eye(len(a), dtype=a.dtype)
        wb = torch.linalg.solve(a, e1.T @ g)
        return cls(enc, wb[:-1].float(), wb[-1].float(), pixels, normalization, gain, device=device)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return _from_linear(self.encode(images) @ self.weight + self.bias, self.normalization, self.gain)

    def observe(self, scrambled: np.ndarray) -> torch.Tensor:
        return _pixels_of(scrambled, self.pixels)


class PipelineSurrogate:
    """Encoder then a scrambler (the victim's, or an estimated one), on a subset of pixels.

    ``scramble`` maps embeddings ``(N, d)`` to images ``(N, 3, H, W)`` in [0, 1], differentiably
    (an :class:`owsd.scrambler.Scrambler` qualifies).
    """

    def __init__(self, encoder: Encoder, scramble: Callable[[torch.Tensor], torch.Tensor],
                 pixels: np.ndarray, *, device: str = "cpu") -> None:
        self.encode, self.scramble = torch_encoder(encoder, device=device), scramble
        self.pixels = torch.as_tensor(pixels, device=device)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.scramble(self.encode(images)).reshape(len(images), -1)[:, self.pixels]

    def observe(self, scrambled: np.ndarray) -> torch.Tensor:
        return _pixels_of(scrambled, self.pixels.cpu().numpy())


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV per image, ``(N,)``: mean absolute difference of neighbours."""
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).mean(1)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def optimize_inversion(surrogate: Surrogate, scrambled: np.ndarray, *, init: np.ndarray, steps: int = 300,
                       lr: float = 0.1, tv_weight: float = 0.05, batch_size: int = 128, device: str = "cpu",
                       verbose: bool = True) -> tuple[np.ndarray, list[float]]:
    """Images minimizing the surrogate's normalized residual plus ``tv_weight`` TV.

    ``init`` is the starting image ``(C, H, W)`` in [0, 1] (the mean image).  Returns the
    reconstructions ``(N, C, H, W)`` and the mean final objective per step (a curve).
    """
    obs_all = surrogate.observe(scrambled).to(device)
    scale = obs_all.var().clamp_min(1e-8)
    z0 = torch.logit(torch.as_tensor(init, dtype=torch.float32).clamp(0.02, 0.98)).to(device)
    out, curve = [], np.zeros(steps)
    for s in tqdm(range(0, len(scrambled), batch_size), desc="optimize", disable=not verbose, unit="batch"):
        obs = obs_all[s:s + batch_size]
        z = z0.expand(len(obs), *z0.shape).clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        for t in range(steps):
            x = torch.sigmoid(z)
            data = ((surrogate.predict(x) - obs) ** 2).mean(1) / scale
            loss = (data + tv_weight * total_variation(x)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            curve[t] += loss.item() / len(scrambled)
        out.append(torch.sigmoid(z).detach().cpu().numpy())
    return np.concatenate(out), curve.tolist()


@dataclass(frozen=True, kw_only=True)
class OptimizationParams:
    """Parameters of optimization-based inversion."""

    surrogate: str = param(doc="the differentiable model of the victim's pipeline", choices=SURROGATES)
    surrogate_model: Any = param(None, doc="the model object of surrogate='given' (predict() and observe())")
    pairs: int = param(doc="known (image, scrambled) pairs fitting the least-squares surrogate", ge=1)
    aux: int = param(doc="public images (shape and starting point)", ge=1)
    n_pixels: int = param(doc="scrambled pixels the surrogate models", ge=1)
    ridge: float = param(doc="ridge of the least-squares surrogate", ge=0)
    steps: int = param(doc="gradient steps per batch of targets", ge=1)
    lr: float = param(doc="Adam learning rate", gt=0)
    tv_weight: float = param(doc="weight of the total-variation prior", ge=0)
    batch_size: int = param(doc="targets optimized together", ge=1)
    max_targets: int = param(doc="targets reconstructed at most (0: all)", ge=0)

    def check(self) -> Optional[str]:
        m = self.surrogate_model
        if self.surrogate == "given" and not (hasattr(m, "predict") and hasattr(m, "observe")):
            return "surrogate='given' needs surrogate_model with predict() and observe()"
        return None


@register_attack
class InversionOptimization(Attack):
    """Gradient descent on the input through a white-box surrogate, with a TV prior."""

    name = "inversion-optimization"
    family = "inversion"
    Params = OptimizationParams

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # the model object stays out of ``params`` (they are written to result.json)
        self._surrogate_model = self.params["surrogate_model"]
        if self._surrogate_model is not None:
            self.params["surrogate_model"] = type(self._surrogate_model).__name__

    def threat_model(self) -> ThreatModel:
        p = self.params
        if p["surrogate"] == "least-squares":
            return ThreatModel(known_pairs=p["pairs"], pair_input="image", sees_scrambled=True)
        aux = dict(auxiliary="public images of the victim's kind (shape and starting point)", auxiliary_size=p["aux"],
                   auxiliary_closeness="same-distribution")
        if p["surrogate"] == "known-key":
            return ThreatModel(knows_key=True, knows_encoder=True, sees_scrambled=True, **aux)
        return ThreatModel(sees_scrambled=True, **aux)

    def run(self, view: AttackerView, *, rng: np.random.Generator, generator: torch.Generator) -> Reconstructions:
        p = self.params
        norm, gain = output_map(view)
        if p["surrogate"] == "least-squares":
            images = view.pairs_inputs
            dim = view.spec.embedding_dim if view.spec is not None else 64
            sur = LinearSurrogate.fit(images, view.pairs_scrambled, dim=dim, n_pixels=p["n_pixels"],
                                      ridge=p["ridge"], rng=rng, normalization=norm, gain=gain, device=self.device)
        else:
            images = view.auxiliary.images
            if p["surrogate"] == "known-key":
                if view.key is None or view.encoder is None:
                    raise RequirementError(f"{self.name} (known-key) needs an OWSD target with a key and encoder")
                total = int(np.prod(view.image_shape))
                pixels = np.sort(rng.choice(total, min(p["n_pixels"], total), replace=False))
                # the key's exact map (the query noise is the client's, not the key's)
                sur = PipelineSurrogate(view.encoder, Scrambler(view.key, device=self.device, query_noise=False),
                                        pixels, device=self.device)
            else:
                sur = self._surrogate_model
        init = unit_images(images).mean(0).numpy()
        idx = select_targets(view, max_targets=p["max_targets"], rng=rng)
        recon, curve = optimize_inversion(sur, view.targets[idx], init=init, steps=p["steps"], lr=p["lr"],
                                          tv_weight=p["tv_weight"], batch_size=p["batch_size"],
                                          device=self.device, verbose=self.verbose)
        return Reconstructions(recon, idx, curves={"objective": curve})
