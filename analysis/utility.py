"""The scheme's utility measured inside an audit: what ``owsd run`` measures, for any target.

Example:
    >>> sorted(UTILITY_BUDGETS)
    ['full', 'smoke', 'standard']
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import numpy as np

#: settings of the utility measurement, per budget
UTILITY_BUDGETS: dict[str, dict] = {
    "smoke": {"n_train": 300, "n_test": 200, "epochs": 15, "output_sizes": (10, 1000)},
    "standard": {"n_train": 2000, "n_test": 1000, "epochs": 15, "output_sizes": (10, 100, 1000)},
    "full": {"n_train": None, "n_test": None, "epochs": 30, "output_sizes": (10, 100, 1000)},
}


def measure_utility(target: "AuditTarget", *, dataset: str, data_dir=None, cloud: Any = "tiny",
                    n_train: Optional[int] = 300, n_test: Optional[int] = 200, epochs: int = 5,
                    output_sizes: Sequence[int] = (10, 1000), classifier: str = "mlp", device: str = "cpu",
                    verbose: bool = False) -> dict:
    """The scheme's utility table (as ``owsd run``), for any target, without writing the key.

    The internal model learns labels from the cloud's (top-k truncated) output for the
    scrambled images as the channel transmits them (uint8 or float32), with and without the embedding (OWSD targets),
    against a plaintext model of the same capacity.  Accuracies carry Wilson 95% CIs.
    ``cloud`` is a cloud name or a :class:`owsd.cloud.Cloud` (the audit shares one).
    """
    from owsd.stats import wilson_interval
    from owsd.cloud import Cloud, make_cloud, truncate_topk
    from owsd.data import load_splits
    from owsd.internal import Classifier, InternalModel

    t_all = time.perf_counter()
    rng = np.random.default_rng(0)
    train, test = load_splits(dataset, data_dir)
    train, test = train.subset(n_train, rng=rng), test.subset(n_test, rng=rng)
    cl = cloud if isinstance(cloud, Cloud) else make_cloud(cloud)
    sizes = tuple(sorted({int(k) for k in output_sizes if 1 <= int(k) <= cl.num_outputs}))
    if not sizes:
        from analysis.audit import AuditError

        raise AuditError(f"no output size within [1, {cl.num_outputs}]: {output_sizes}")
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    ch = target.channel(train.flat(), device=device)
    has_emb = hasattr(ch, "embed")
    etr = ch.embed(train.images) if has_emb else None
    ete = ch.embed(test.images) if has_emb else None
    str_, ste = ch.scramble_images(train.images), ch.scramble_images(test.images)
    secs["scramble"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ptr, pte = cl.predict(str_, verbose=verbose), cl.predict(ste, verbose=verbose)
    secs["cloud"] = time.perf_counter() - t0

    def acc(pred):
        k = int((pred == test.labels).sum())
        return k / len(test), list(wilson_interval(k, len(test)))

    kw = dict(kind=classifier, epochs=epochs, device=device, verbose=False)
    t0 = time.perf_counter()
    a, ci = {}, {}
    a["plaintext"], ci["plaintext"] = acc(Classifier(**kw).fit(train.flat(), train.labels).predict(test.flat()))
    if has_emb:
        a["embedding_only"], ci["embedding_only"] = acc(Classifier(**kw).fit(etr, train.labels).predict(ete))
    first: dict = {}  # per output size: the cloud-only model, whose fitted decoder the second model reuses
    for name, use in (("cloud_only", False), ("cloud_plus_embedding", True)):
        if use and not has_emb:
            continue
        a[name], ci[name] = {}, {}
        for k in sizes:
            # the scheme's embedding decoder where there is an embedding; raw log-probabilities otherwise
            m = InternalModel(use_embedding=use, decoder="embedding" if has_emb else "none", **kw).fit(
                truncate_topk(ptr, k), train.labels, etr, decoder_from=first.get(k))
            first.setdefault(k, m)
            a[name][str(k)], ci[name][str(k)] = acc(m.predict(truncate_topk(pte, k), ete))
    secs["internal"] = time.perf_counter() - t0
    secs["total"] = time.perf_counter() - t_all
    return {"dataset": dataset, "cloud": cl.name, "n_train": len(train), "n_test": len(test),
            "num_classes": train.num_classes, "chance": 1.0 / train.num_classes,
            "classifier": {"kind": classifier, "epochs": epochs}, "output_sizes": list(sizes),
            "decoder": "embedding" if has_emb else "none",
            "transmitted": "uint8" if ch.transmit_uint8 else "float32", "accuracy": a, "accuracy_ci95": ci, "seconds": secs,
            "spec": {"name": target.name}}
