"""Surrogate scramblers of a public spec: forward passes, gradient-descent fitting, symmetries.

A surrogate is a list of weights (and biases) for the public :class:`~owsd.spec.ScramblerSpec`.
:func:`fit_surrogate` fits one to (input, scrambled) pairs by gradient descent with random
restarts (UnSplit-style; in the logit domain for sigmoid specs, last layer warm-started by
least squares); :func:`weight_error` compares a surrogate to the true key after
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
import time
from typing import Optional, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from tqdm.auto import tqdm

from attacks.key_estimation.linear_fit import as_unit_float, to_link
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
    from owsd.ops import fused_scramble  # local: loads (or builds) the compiled extension on first use

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
FIT_DOMAINS = ("link", "image")


def fit_domain(spec: ScramblerSpec) -> str:
    """Where a surrogate is fitted: ``link`` (the logit of the image, ``gain`` times the last
    feature map) when the output map is the invertible ``sigmoid``, else ``image``."""
    return "link" if spec.normalization == "sigmoid" else "image"


def fit_targets(spec: ScramblerSpec, scrambled: np.ndarray, domain: str) -> torch.Tensor:
    """Flattened ``(N, P)`` float32 targets in the fit domain (uint8 or float images in)."""
    if domain == "link":
        return torch.from_numpy(to_link(scrambled, "logit")).float()
    return torch.from_numpy(as_unit_float(scrambled).reshape(len(scrambled), -1)).float()


def fit_forward(spec: ScramblerSpec, weights, biases, embeddings: torch.Tensor, domain: str) -> torch.Tensor:
    """Differentiable ``(N, P)`` predictions of a surrogate in the fit domain."""
    if domain == "link":
        return float(spec.gain) * pre_normalization(spec, weights, biases, embeddings).reshape(len(embeddings), -1)
    return surrogate_forward(spec, weights, biases, embeddings).reshape(len(embeddings), -1)


def _last_features(spec: ScramblerSpec, weights, biases, embeddings: torch.Tensor) -> torch.Tensor:
    x = embeddings.reshape(-1, *spec.input_shape).to(weights[0].dtype)
    for w, b, lay in zip(weights[:-1], biases[:-1], spec.layers[:-1]):
        x = apply_activation(torch.nn.functional.conv_transpose2d(x, w, b, stride=lay.stride, padding=lay.padding,
                                                                  output_padding=lay.output_padding), lay.activation)
    return x


def solve_last_layer(spec: ScramblerSpec, weights, biases, embeddings: torch.Tensor, targets: torch.Tensor) -> bool:
    """Replace the last layer's weights by their least-squares fit to link-domain ``targets``
    given the other layers (the link-domain output is linear in them).  In place; returns
    False (nothing done) where that does not hold (an activation or a bias on the last layer)."""
    lay = spec.layers[-1]
    if lay.activation != "none" or lay.bias:
        return False
    with torch.no_grad():
        h = _last_features(spec, weights, biases, embeddings)
        cin, k, cout = h.shape[1], lay.kernel_size, lay.out_channels
        basis = torch.zeros(cin, cin * k * k, k, k, dtype=h.dtype)
        for i in range(cin):
            for a in range(k * k):
                basis[i, i * k * k + a, a // k, a % k] = 1.0
        g = torch.zeros(cin * k * k, cin * k * k, dtype=torch.float64)
        rhs = torch.zeros(cin * k * k, cout, dtype=torch.float64)
        for j in range(len(h)):
            a = torch.nn.functional.conv_transpose2d(h[j:j + 1], basis, stride=lay.stride, padding=lay.padding,
                                                     output_padding=lay.output_padding)
            a = a.reshape(cin * k * k, -1).double()
            g += a @ a.T
            rhs += a @ targets[j].reshape(cout, -1).double().T
        g += 1e-9 * float(g.trace()) / len(g) * torch.eye(len(g), dtype=torch.float64)
        sol = torch.linalg.solve(g, rhs) / float(spec.gain)  # (cin * k * k, cout)
        weights[-1].copy_(sol.T.reshape(cout, cin, k, k).permute(1, 0, 2, 3).to(weights[-1].dtype))
    return True


def fit_surrogate(spec: ScramblerSpec, inputs: np.ndarray, scrambled: np.ndarray, *, steps: int,
                  restarts: int, batch_size: int, lr: float, generator: torch.Generator,
                  val_fraction: float = 0.1, warm_start: int = 16, verbose: bool = False
                  ) -> tuple[list[torch.Tensor], list[Optional[torch.Tensor]], dict]:
    """Fit weights of ``spec`` to (embedding, scrambled) pairs by Adam, best of ``restarts``.

    ``scrambled`` is what the attacker received: float images in [0, 1] (what OWSD sends) or
    uint8 pixels.  What an informed attacker does with them:

    * fit domain (:func:`fit_domain`): for a ``sigmoid`` output the logit of the image, which
      float32 images give exactly (``gain`` times the last feature map): the fit is then of a
      piecewise-linear, positively homogeneous map, with no saturating output in the way;
    * scale-invariant loss: squared error divided by the targets' variance around their mean
      (the functional error on the training pairs; 1.0 = constant predictor);
    * initialization from the spec's public prior, the last layer rescaled to the targets'
      scale, then (link domain) solved by least squares on ``warm_start`` pairs given the
      random other layers;
    * Adam with a per-layer step ``lr`` times the layer's initial weight scale (layers differ
      by 5x in scale), linear warm-up over 5% of the steps, cosine decay;
    * ``restarts`` from independent initializations, the one kept being the lowest loss on a
      held-back ``val_fraction`` of the pairs (all pairs when fewer than 20).
    """
    if spec.carrier != "none":
        raise NotImplementedError("surrogate fitting of key-derived carriers is not implemented")
    t_start = time.perf_counter()
    domain = fit_domain(spec)
    x = torch.from_numpy(np.asarray(inputs, np.float32))
    y = fit_targets(spec, scrambled, domain)
    n = len(x)
    perm = torch.randperm(n, generator=generator)
    n_val = int(round(val_fraction * n)) if n >= 20 else 0
    val, tr = perm[:n_val], perm[n_val:]
    ytr = y[tr]
    den = float(((ytr - ytr.mean(0)) ** 2).sum(1).mean()) + 1e-30
    best = (math.inf, None, None)
    history = []
    warm = max(1, steps // 20)
    schedule = lambda i: min(1.0, (i + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / max(1, steps)))  # noqa: E731

    def check_loss(ws, bs, idx) -> float:
        with torch.no_grad():
            errs = [((fit_forward(spec, ws, bs, x[idx[s:s + 32]], domain) - y[idx[s:s + 32]]) ** 2).sum(1)
                    for s in range(0, len(idx), 32)]
        return float(torch.cat(errs).mean()) / den

    for r in range(restarts):
        ws, bs = random_weights(spec, generator)
        init = "prior"
        if domain == "link" or spec.normalization == "none":
            with torch.no_grad():  # match the targets' scale (positively homogeneous in the last layer)
                sub = tr[:min(32, len(tr))]
                p = fit_forward(spec, ws, bs, x[sub], domain)
                ws[-1] *= float(y[sub].std() / (p.std() + 1e-30))
            init = "prior, rescaled"
        if domain == "link" and warm_start and solve_last_layer(spec, ws, bs, x[tr[:warm_start]], y[tr[:warm_start]]):
            init = "prior, last layer by least squares"
        init_loss = check_loss(ws, bs, tr[:min(64, len(tr))])
        groups = [{"params": [w.requires_grad_(True)], "lr": lr * float(w.std())} for w in ws]
        groups += [{"params": [b.requires_grad_(True)], "lr": lr * 0.1} for b in bs if b is not None]
        opt = torch.optim.Adam(groups)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        losses = []
        for _ in tqdm(range(steps), desc=f"surrogate fit {r + 1}/{restarts}", disable=not verbose, leave=False):
            idx = tr[torch.randint(len(tr), (min(batch_size, len(tr)),), generator=generator)]
            loss = ((fit_forward(spec, ws, bs, x[idx], domain) - y[idx]) ** 2).sum(1).mean() / den
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss))
        ws = [w.detach() for w in ws]
        bs = [None if b is None else b.detach() for b in bs]
        score = check_loss(ws, bs, val if n_val else tr)
        history.append({"restart": r, "init": init, "init_loss": init_loss,
                        "final_train_loss": float(np.mean(losses[-10:])) if losses else math.nan,
                        "check_loss": score})
        log.info("surrogate restart %d: init loss %.4g, train loss %.4g, check loss %.4g", r, init_loss,
                 history[-1]["final_train_loss"], score)
        if score < best[0]:
            best = (score, ws, bs)
    return best[1], best[2], {"restarts": history, "check_loss": best[0], "domain": domain,
                              "seconds": time.perf_counter() - t_start}


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
