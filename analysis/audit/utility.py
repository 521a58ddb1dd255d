"""The scheme's utility inside an audit: :func:`owsd.pipeline.measure_utility` for any target.

The measurement is ``owsd run``'s (one function, :func:`owsd.pipeline.measure_utility`); this
module picks its settings per budget, builds the target's channel (an OWSD target's encoder
fitted on the training images) and writes the audit's ``utility.json`` layout.

Example:
    >>> sorted(UTILITY_BUDGETS)
    ['full', 'smoke', 'standard']
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

from analysis.audit.errors import AuditError
from analysis.audit.target import AuditTarget
from owsd import pipeline
from owsd.cloud import Cloud
from owsd.cloud_sources import open_cloud

#: settings of the utility measurement, per budget
UTILITY_BUDGETS: dict[str, dict] = {
    "smoke": {"n_train": 300, "n_test": 200, "epochs": 15, "output_sizes": (10, 1000)},
    "standard": {"n_train": 2000, "n_test": 1000, "epochs": 15, "output_sizes": (10, 100, 1000)},
    "full": {"n_train": None, "n_test": None, "epochs": 30, "output_sizes": (10, 100, 1000)},
}


def measure_utility(target: AuditTarget, *, dataset: str | Path, data_dir: Optional[str | Path] = None,
                    image_size: Optional[int] = None, cloud: str | Cloud = "tiny", n_train: Optional[int] = 300, n_test: Optional[int] = 200,
                    epochs: int = 5, output_sizes: Sequence[int] = (10, 1000), classifier: str = "mlp",
                    device: str = "cpu", verbose: bool = False) -> dict:
    """The scheme's utility table (as ``owsd run``), for any target, without writing the key.

    The internal model learns labels from the cloud's (top-k truncated) output for the
    scrambled images as the channel transmits them (uint8 or float32), with and without the
    embedding (OWSD targets, whose internal model decodes the embedding first; raw
    log-probabilities otherwise), against a plaintext model of the same capacity.  Accuracies
    carry Wilson 95% CIs.  ``cloud`` is a cloud name or a :class:`owsd.cloud.Cloud` (the audit
    shares one); output sizes beyond the cloud's outputs are left out.
    """
    t_all = time.perf_counter()
    train, test = pipeline.utility_split(dataset, data_dir, n_train=n_train, n_test=n_test, image_size=image_size)
    cl = cloud if isinstance(cloud, Cloud) else open_cloud(cloud)
    sizes = tuple(sorted({int(k) for k in output_sizes if 1 <= int(k) <= cl.num_outputs}))
    if not sizes:
        raise AuditError(f"no output size within [1, {cl.num_outputs}]: {output_sizes}")
    t0 = time.perf_counter()
    ch = target.channel(train.flat(), device=device)
    t_channel = time.perf_counter() - t0
    m = pipeline.measure_utility(train=train, test=test, channel=ch, cloud=cl, output_sizes=sizes,
                                 classifier=classifier, epochs=epochs,
                                 decoder="embedding" if hasattr(ch, "embed") else "none", device=device,
                                 verbose=verbose)
    s = m.seconds
    secs = {"scramble": t_channel + s["embed"] + s["scramble"], "cloud": s["cloud"],
            "internal": s["baselines"] + s["internal"], "total": time.perf_counter() - t_all}
    return {"dataset": str(dataset), "cloud": cl.name, "cloud_model": cl.describe(), "n_train": m.n_train, "n_test": m.n_test,
            "num_classes": m.num_classes, "chance": m.chance,
            "classifier": {"kind": classifier, "epochs": epochs}, "output_sizes": list(m.output_sizes),
            "decoder": m.decoder, "transmitted": m.transmitted, "accuracy": m.accuracy,
            "accuracy_ci95": m.accuracy_ci95, "seconds": secs, "spec": {"name": target.name}}
