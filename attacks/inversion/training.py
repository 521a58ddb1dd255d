"""The training loop every inversion network here uses (Adam, BCE on pixels, cosine decay).

The budget is explicit: ``epochs`` and, optionally, a wall-clock cap ``max_seconds`` (then
the run stops early and says so in its curves).  Randomness comes only from the
``generator`` passed in (weight initialization and minibatch order).

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
import logging
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


def train_inversion(net: InversionNet, inputs: torch.Tensor, targets: torch.Tensor, *, epochs: int,
                    batch_size: int = 64, lr: float = 2e-3, weight_decay: float = 1e-5, max_seconds: float = 0.0,
                    generator: torch.Generator, device: str = "cpu", verbose: bool = True) -> dict[str, list]:
    """Fit ``net`` so that ``sigmoid(net(inputs)) ~ targets`` (images in [0, 1]).

    Returns curves: ``train_loss`` (mean BCE per epoch) and ``seconds`` (cumulative).
    ``max_seconds > 0`` stops after the first epoch that ends past that many seconds.
    """
    if len(inputs) != len(targets):
        raise ValueError(f"{len(inputs)} inputs for {len(targets)} targets")
    if len(inputs) < 2:
        raise ValueError("training an inversion network needs at least 2 examples")
    net.to(device)
    net.fit_input_stats(inputs.to(device))
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    n = len(inputs)
    curves: dict[str, list] = {"train_loss": [], "seconds": []}
    t0 = time.perf_counter()
    bar = tqdm(range(epochs), desc="train inversion", unit="epoch", disable=not verbose)
    for _ in bar:
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
        curves["seconds"].append(time.perf_counter() - t0)
        bar.set_postfix(bce=f"{total / n:.4f}")
        if max_seconds and curves["seconds"][-1] > max_seconds:
            log.info("inversion training stopped at its %.0f s budget after %d epochs", max_seconds,
                     len(curves["train_loss"]))
            break
    net.eval()
    return curves
