"""Surrogate scramblers of a public spec: forward passes, gradient-descent fitting, symmetries.

A surrogate is a list of weights (and biases) for the public :class:`~owsd.spec.ScramblerSpec`.
:func:`fit_surrogate` fits one to (input, scrambled) pairs by gradient descent with random
restarts (UnSplit-style); :func:`weight_error` compares a surrogate to the true key after
resolving the symmetries of the architecture (positive per-channel scalings through
positively homogeneous activations, channel permutations between layers, the global scale
that ``standardize`` removes).

Example:
    >>> import torch
    >>> from owsd.presets import get_preset
    >>> spec = get_preset("default")
    >>> w, b = random_weights(spec, torch.Generator().manual_seed(0))
    >>> err, _ = weight_error(spec, w, w)
    >>> round(err, 6)
    0.0
"""

from __future__ import annotations

import logging
import math
from typing import Optional, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from tqdm.auto import tqdm

from owsd.ops.reference import apply_activation, fused_scramble_ref
from owsd.spec import ScramblerSpec

log = logging.getLogger(__name__)

HOMOGENEOUS = ("none", "relu", "leaky_relu")  # f(a x) = a f(x) for a > 0


def _layer_kwargs(spec: ScramblerSpec) -> dict:
    lays = spec.layers
    return dict(strides=[l.stride for l in lays], paddings=[l.padding for l in lays],
                output_paddings=[l.output_padding for l in lays], activations=[l.activation for l in lays],
                normalization=spec.normalization, gain=float(spec.gain))


def random_weights(spec: ScramblerSpec, generator: torch.Generator, *, dtype: torch.dtype = torch.float32
                   ) -> tuple[list[torch.Tensor], list[Optional[torch.Tensor]]]:
    """Weights of a random key of ``spec`` (same distribution as :meth:`owsd.keys.Key.weights`)."""
    ws, bs, cin = [], [], spec.input_shape[0]
    for lay in spec.layers:
        fan = cin * max(1.0, (lay.kernel_size / lay.stride) ** 2)
        shape = (cin, lay.out_channels, lay.kernel_size, lay.kernel_size)
        ws.append(torch.randn(shape, generator=generator, dtype=dtype) * spec.weight_scale / math.sqrt(fan))
        bs.append(0.1 * torch.randn(lay.out_channels, generator=generator, dtype=dtype) if lay.bias else None)
        cin = lay.out_channels
    return ws, bs


def surrogate_forward(spec: ScramblerSpec, weights: Sequence[torch.Tensor], biases: Sequence[Optional[torch.Tensor]],
                      embeddings: torch.Tensor, *, carrier: Optional[torch.Tensor] = None,
                      differentiable: bool = True) -> torch.Tensor:
    """Images ``(N, 3, H, W)`` in [0, 1] that ``weights`` give for ``embeddings`` ``(N, D)``."""
    x = embeddings.reshape(-1, *spec.input_shape).to(weights[0].dtype)
    if differentiable:
        return fused_scramble_ref(x, list(weights), list(biases), carrier=carrier, **_layer_kwargs(spec))
    from owsd.ops import fused_scramble

    with torch.no_grad():
        return fused_scramble(x, list(weights), list(biases), carrier=carrier, **_layer_kwargs(spec))


def pre_normalization(spec: ScramblerSpec, weights: Sequence[torch.Tensor],
                      biases: Sequence[Optional[torch.Tensor]], embeddings: torch.Tensor) -> torch.Tensor:
    """The last feature map before the final normalization (the link domain)."""
    x = embeddings.reshape(-1, *spec.input_shape).to(weights[0].dtype)
    for w, b, lay in zip(weights, biases, spec.layers):
        x = torch.nn.functional.conv_transpose2d(x, w, b, stride=lay.stride, padding=lay.padding,
                                                 output_padding=lay.output_padding)
        x = apply_activation(x, lay.activation)
    return x


def predict_images(spec: ScramblerSpec, weights, biases, embeddings: np.ndarray, *, batch_size: int = 64,
                   carrier: Optional[torch.Tensor] = None) -> np.ndarray:
    """Float images for many embeddings (no gradients, fast kernel), ``(N, 3, H, W)``."""
    e = torch.from_numpy(np.asarray(embeddings, np.float32))
    out = [surrogate_forward(spec, weights, biases, e[s:s + batch_size], carrier=carrier, differentiable=False)
           for s in range(0, len(e), batch_size)]
    return torch.cat(out).numpy()


# --- fitting ------------------------------------------------------------------------------
def fit_surrogate(spec: ScramblerSpec, inputs: np.ndarray, scrambled_u8: np.ndarray, *, steps: int,
                  restarts: int, batch_size: int, lr: float, generator: torch.Generator,
                  val_fraction: float = 0.1, verbose: bool = False
                  ) -> tuple[list[torch.Tensor], list[Optional[torch.Tensor]], dict]:
    """Fit weights of ``spec`` to (embedding, uint8 scrambled) pairs by Adam, best of ``restarts``.

    The loss is the image-domain MSE divided by the targets' variance; the restart kept is the
    one with the lowest loss on a held-back ``val_fraction`` of the pairs (all pairs when few).
    """
    if spec.carrier != "none":
        raise NotImplementedError("surrogate fitting of key-derived carriers is not implemented")
    x = torch.from_numpy(np.asarray(inputs, np.float32))
    y = torch.from_numpy(np.asarray(scrambled_u8)).float() / 255.0
    n = len(x)
    perm = torch.randperm(n, generator=generator)
    n_val = int(round(val_fraction * n)) if n >= 20 else 0
    val, tr = perm[:n_val], perm[n_val:]
    var = float(y[tr].var()) + 1e-12
    best = (math.inf, None, None)
    history = []
    for r in range(restarts):
        ws, bs = random_weights(spec, generator)
        params = [w.requires_grad_(True) for w in ws] + [b.requires_grad_(True) for b in bs if b is not None]
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
        losses = []
        for _ in tqdm(range(steps), desc=f"surrogate fit {r + 1}/{restarts}", disable=not verbose, leave=False):
            idx = tr[torch.randint(len(tr), (min(batch_size, len(tr)),), generator=generator)]
            loss = ((surrogate_forward(spec, ws, bs, x[idx]) - y[idx]) ** 2).mean() / var
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss))
        with torch.no_grad():
            check = val if n_val else tr
            pred = torch.from_numpy(predict_images(spec, ws, bs, x[check].numpy()))
            score = float(((pred - y[check]) ** 2).mean()) / var
        history.append({"restart": r, "final_train_loss": losses[-1] if losses else math.nan, "check_loss": score})
        log.info("surrogate restart %d: train loss %.4g, check loss %.4g", r, history[-1]["final_train_loss"], score)
        if score < best[0]:
            best = (score, [w.detach() for w in ws], [None if b is None else b.detach() for b in bs])
    return best[1], best[2], {"restarts": history, "check_loss": best[0]}


# --- symmetries -----------------------------------------------------------------------------
def _canonical(spec: ScramblerSpec, weights: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Per-channel unit-norm filters, scales pushed to the next layer; global scale removed."""
    ws = [np.asarray(w, np.float64).copy() for w in weights]
    for i in range(len(ws) - 1):
        if spec.layers[i].activation not in HOMOGENEOUS:
            continue
        norms = np.sqrt((ws[i] ** 2).sum(axis=(0, 2, 3))) + 1e-12
        ws[i] /= norms[None, :, None, None]
        ws[i + 1] *= norms[:, None, None, None]
    if spec.normalization == "standardize":
        ws[-1] /= np.sqrt((ws[-1] ** 2).sum()) + 1e-12
    return ws


def weight_error(spec: ScramblerSpec, estimate: Sequence[torch.Tensor], truth: Sequence[torch.Tensor]
                 ) -> tuple[float, list[float]]:
    """Relative weight error ``||W_hat - W|| / ||W||`` after resolving the spec's symmetries.

    Channels between layers are matched by the Hungarian algorithm on the cosine of their
    (canonically scaled) filters, layer by layer.  Returns the overall error and per layer.
    Permutations are only resolved where the activation is positively homogeneous.
    """
    est, tru = _canonical(spec, estimate), _canonical(spec, truth)
    for i in range(len(est) - 1):
        if spec.layers[i].activation not in HOMOGENEOUS or spec.layers[i].activation == "none":
            continue
        a = est[i].transpose(1, 0, 2, 3).reshape(est[i].shape[1], -1)
        b = tru[i].transpose(1, 0, 2, 3).reshape(tru[i].shape[1], -1)
        cos = (a / (np.linalg.norm(a, axis=1, keepdims=True) + 1e-12)) @ \
              (b / (np.linalg.norm(b, axis=1, keepdims=True) + 1e-12)).T
        rows, cols = linear_sum_assignment(-cos)
        order = rows[np.argsort(cols)]  # estimate channel matched to each true channel
        est[i] = est[i][:, order]
        est[i + 1] = est[i + 1][order]
    per = [float(np.linalg.norm(e - t) / (np.linalg.norm(t) + 1e-12)) for e, t in zip(est, tru)]
    num = sum(float(((e - t) ** 2).sum()) for e, t in zip(est, tru))
    den = sum(float((t ** 2).sum()) for t in tru)
    return math.sqrt(num / den), per
