"""The utility figure of ``owsd run`` and the audit: accuracy against the cloud's output size.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> r = {"accuracy": {"cloud_only": {"10": 0.5, "1000": 0.9}, "cloud_plus_embedding": {"10": 0.8, "1000": 0.9},
    ...                   "plaintext": 0.95, "embedding_only": 0.94},
    ...      "accuracy_ci95": {"cloud_only": {"10": [0.4, 0.6], "1000": [0.85, 0.93]},
    ...                        "cloud_plus_embedding": {"10": [0.7, 0.85], "1000": [0.85, 0.93]}},
    ...      "chance": 0.1, "dataset": "digits", "cloud": "tiny", "spec": {"name": "default"}, "n_train": 100}
    >>> p = Path(tempfile.mkdtemp()) / "utility.png"
    >>> plot_utility(r, p); p.read_bytes()[1:4]
    b'PNG'
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from owsd.io import atomic_write_bytes


def plot_utility(results: dict, path: Path) -> None:
    """Accuracy against output size, with the plaintext and embedding-only baselines as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc, ci = results["accuracy"], results["accuracy_ci95"]
    ks = [int(k) for k in acc["cloud_only"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, style in (("cloud_only", "o-"), ("cloud_plus_embedding", "s--")):
        ys = [acc[name][str(k)] for k in ks]
        err = np.array([[y - ci[name][str(k)][0], ci[name][str(k)][1] - y] for k, y in zip(ks, ys)]).T
        ax.errorbar(ks, ys, yerr=err, fmt=style, capsize=3, label=name.replace("_", " "))
    ax.axhline(acc["plaintext"], color="k", lw=1, label=f"plaintext ({acc['plaintext']:.3f})")
    ax.axhline(acc["embedding_only"], color="g", lw=1, ls=":", label=f"embedding only ({acc['embedding_only']:.3f})")
    ax.axhline(results["chance"], color="r", lw=1, ls="-.", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("cloud output size (top-k returned)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{results['dataset']} / {results['cloud']} / spec {results['spec']['name']} "
                 f"(n_train={results['n_train']})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
