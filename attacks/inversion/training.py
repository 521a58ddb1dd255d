"""The training loop every inversion network here uses (Adam, BCE on pixels, cosine decay).

The budget is explicit: ``epochs`` and, optionally, a wall-clock cap ``max_seconds`` (then
the run stops early and says so in its curves), and optionally early stopping: with
``patience > 0`` a random ``val_fraction`` of the training examples is held out, the
validation BCE is measured after every epoch, training stops once it has not improved for
``patience`` epochs, and the weights of the best epoch are restored (the attacker's own
model selection; it never sees the victim's targets).  Randomness comes only from the
``generator`` passed in (weight initialization, the validation split and minibatch order).
Adam runs with ``fused=True`` where torch supports it (the per-parameter loop of the
default implementation was half of the CPU time of these small networks).

Example:
    >>> import torch
    >>> from attacks.inversion.decoder import ImageDecoder, InversionNet, VectorEncoder
    >>> g = torch.Generator().manual_seed(0)
    >>> with seeded(g):
    ...     net = InversionNet(VectorEncoder(5, latent=8, hidden=16), ImageDecoder(8, (1, 8, 8), width=4))
    >>> curves = train_inversion(net, torch.randn(32, 5), torch.rand(32, 1, 8, 8), epochs=2, batch_size=16,
    ...                          generator=g, verbose=False)
    >>> len(curves["train_loss"])
    2
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from typing import Iterator

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from attacks.inversion.decoder import InversionNet

log = logging.getLogger(__name__)


@contextlib.contextmanager
def seeded(generator: torch.Generator) -> Iterator[None]:
    """Run a block (module construction) with torch's global RNG seeded from ``generator``."""
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _adam(params, *, lr: float, weight_decay: float, device: str) -> torch.optim.Optimizer:
    """Adam, fused when this torch build supports it on ``device`` (same update, one kernel)."""
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # fused not available for this device / build
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@torch.no_grad()
def _mean_bce(net: InversionNet, inputs: torch.Tensor, targets: torch.Tensor, *, batch_size: int,
              device: str) -> float:
    net.eval()
    total = 0.0
    for s in range(0, len(inputs), batch_size):
        xb, yb = inputs[s:s + batch_size].to(device), targets[s:s + batch_size].to(device)
        total += F.binary_cross_entropy_with_logits(net(xb), yb, reduction="sum").item() / yb[0].numel()
    return total / len(inputs)


def train_inversion(net: InversionNet, inputs: torch.Tensor, targets: torch.Tensor, *, epochs: int,
                    batch_size: int = 64, lr: float = 2e-3, weight_decay: float = 1e-5, max_seconds: float = 0.0,
                    patience: int = 0, val_fraction: float = 0.1, min_delta: float = 0.0,
                    generator: torch.Generator, device: str = "cpu", verbose: bool = True) -> dict[str, list]:
    """Fit ``net`` so that ``sigmoid(net(inputs)) ~ targets`` (images in [0, 1]).

    Returns curves: ``train_loss`` (mean BCE per epoch) and ``seconds`` (cumulative); with
    early stopping also ``val_loss``, ``best_epoch`` (1-based) and ``n_val``.
    ``max_seconds > 0`` stops after the first epoch that ends past that many seconds.
    ``patience > 0`` holds out ``val_fraction`` of the examples (at least one, and at least
    one left to train on) and stops when the validation BCE has not dropped below
    ``(1 - min_delta)`` times its best for ``patience`` epochs; the best weights are kept.
    """
    if len(inputs) != len(targets):
        raise ValueError(f"{len(inputs)} inputs for {len(targets)} targets")
    if len(inputs) < 2:
        raise ValueError("training an inversion network needs at least 2 examples")
    if patience < 0 or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"patience must be >= 0 and val_fraction in (0, 1); got {patience}, {val_fraction}")
    net.to(device)
    x_val = y_val = None
    if patience:
        order = torch.randperm(len(inputs), generator=generator)
        n_val = min(len(inputs) - 1, max(1, int(math.ceil(val_fraction * len(inputs)))))
        x_val, y_val = inputs[order[:n_val]], targets[order[:n_val]]
        inputs, targets = inputs[order[n_val:]], targets[order[n_val:]]
    net.fit_input_stats(inputs.to(device))
    opt = _adam(net.parameters(), lr=lr, weight_decay=weight_decay, device=device)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    n = len(inputs)
    curves: dict[str, list] = {"train_loss": [], "seconds": []}
    if patience:
        curves.update(val_loss=[], best_epoch=[0], n_val=[len(x_val)])
    best, best_state, stale = math.inf, None, 0
    t0 = time.perf_counter()
    bar = tqdm(range(epochs), desc="train inversion", unit="epoch", disable=not verbose)
    for epoch in bar:
        net.train()
        perm = torch.randperm(n, generator=generator)
        total = 0.0
        for s in range(0, n, batch_size):
            b = perm[s:s + batch_size]
            xb, yb = inputs[b].to(device), targets[b].to(device)
            loss = F.binary_cross_entropy_with_logits(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        sched.step()
        curves["train_loss"].append(total / n)
        if patience:
            v = _mean_bce(net, x_val, y_val, batch_size=max(batch_size, 256), device=device)
            curves["val_loss"].append(v)
            if v < best * (1.0 - min_delta):
                best, stale = v, 0
                best_state = copy.deepcopy(net.state_dict())
                curves["best_epoch"] = [epoch + 1]
            else:
                stale += 1
        curves["seconds"].append(time.perf_counter() - t0)
        bar.set_postfix(bce=f"{total / n:.4f}")
        if max_seconds and curves["seconds"][-1] > max_seconds:
            log.info("inversion training stopped at its %.0f s budget after %d epochs", max_seconds,
                     len(curves["train_loss"]))
            break
        if patience and stale >= patience:
            log.info("inversion training stopped early after %d epochs (best validation BCE %.4f at epoch %d)",
                     epoch + 1, best, curves["best_epoch"][0])
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return curves
