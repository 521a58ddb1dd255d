"""Figure: what the cloud sees.  Three images and their scrambles under each preset (seeded keys).

    python benchmarks/scrambled_examples.py --data-dir ../shared/data --out docs/figures/scrambled_examples.png
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, help="folder holding mnist/ (digits when absent)")
    ap.add_argument("--out", type=Path, default=Path("scrambled_examples.png"))
    a = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from owsd.data import load_splits
    from owsd.encoder import PCAEncoder
    from owsd.keys import generate_key
    from owsd.presets import PRESETS, get_preset
    from owsd.scrambler import Scrambler

    train, _ = load_splits("mnist" if a.data_dir else "digits", a.data_dir)
    x = train.flat()[:5000]
    enc = PCAEncoder(64).fit(x)
    pick = [int(np.flatnonzero(train.labels == c)[0]) for c in (0, 3, 7)]
    emb = enc.encode(x[pick])
    names = sorted(PRESETS, key=lambda n: n != "default")
    ncol = len(names) + 2
    fig, axes = plt.subplots(len(pick), ncol, figsize=(2 * ncol, 2 * len(pick)))
    for i, idx in enumerate(pick):
        axes[i, 0].imshow(train.images[idx, 0], cmap="gray")
        axes[i, 0].set_title("original" if i == 0 else "", fontsize=8)
        for j, name in enumerate(names):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                key = generate_key(get_preset(name), seed=0)
            img = Scrambler(key)(torch.from_numpy(emb[i:i + 1]))[0].permute(1, 2, 0).numpy()
            axes[i, j + 1].imshow(img)
            axes[i, j + 1].set_title(name if i == 0 else "", fontsize=8)
            if name == "default":  # the faint signal on the carrier, stretched to be seen
                signal = img - key.carrier().permute(1, 2, 0).numpy()
                axes[i, -1].imshow(np.clip(0.5 + signal / (6 * signal.std()), 0, 1))
                axes[i, -1].set_title("default minus carrier, x%.0f" % (1 / (6 * signal.std())) if i == 0 else "",
                                      fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(a.out, dpi=80)


if __name__ == "__main__":
    main()
