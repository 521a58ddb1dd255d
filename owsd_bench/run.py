"""One ``owsd bench`` run: OWSD against homomorphic-encryption inference, side by side.

One run, one machine, one data set (MNIST from ``data_dir``; scikit-learn's digits when no
directory is given, with a note in the result):

* **HE**: the square-activation CNN of TenSEAL's encrypted-MNIST tutorial
  (:mod:`owsd_bench.network`, :mod:`owsd_bench.ckks`), CKKS; :mod:`owsd_bench.he_side`.
* **OWSD**: the ``default`` preset's client against each cloud; :mod:`owsd_bench.owsd_side`.
* **Plaintext**: the same clouds on the unscrambled image: the floor.

Timings are repeated ``repeats`` times (HE and OWSD rounds interleaved, so both see the same
machine load); the result (:mod:`owsd_bench.document`) carries the provenance of the run
(:mod:`owsd.provenance`: machine and load at the start, load at the end, versions with the
git commit, command).

Example (digits, the tiny cloud, one round of one HE image: about half a minute on 2 cores):
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     res = run_benchmark(BenchConfig(he_images=1, owsd_images=8, repeats=1, train=150, test=40,
    ...                                     clouds=("tiny",), he_epochs=1, epochs=2, verbose=False,
    ...                                     cache_dir=d), command="owsd bench --cloud tiny")
    >>> res["ratio"]["he_over_owsd"] > 1, res["command"], res["data"]["dataset"]
    (True, 'owsd bench --cloud tiny', 'digits')
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from owsd import provenance
from owsd import threads as owsd_threads
from owsd.cloud import default_cache_dir
from owsd.data import ImageDataset, load_splits
from owsd_bench.config import BenchConfig
from owsd_bench.document import assemble
from owsd_bench.he_batched import batched_round, plaintext_seconds
from owsd_bench.he_side import he_document, he_per_round, he_round, setup_he
from owsd_bench.measure import matmul_peak
from owsd_bench.network import plaintext_logits
from owsd_bench.owsd_side import cloud_model_documents, owsd_documents, owsd_round, setup_owsd

log = logging.getLogger(__name__)


def load_data(cfg: BenchConfig) -> tuple[ImageDataset, ImageDataset, dict]:
    """MNIST from ``cfg.data_dir``; scikit-learn's digits without one (said in the result's ``data``)."""
    if cfg.data_dir is None:
        train, test = load_splits("digits")
        note = ("no --data-dir given: scikit-learn's 8x8 digits stand in for MNIST (the HE network then uses "
                "a 3x3 stride-1 convolution); pass --data-dir DIR holding mnist/ for the MNIST benchmark")
        log.warning(note)
        return train, test, {"dataset": "digits", "data_dir": None, "note": note}
    train, test = load_splits("mnist", cfg.data_dir)
    return train, test, {"dataset": "mnist", "data_dir": str(cfg.data_dir), "note": None}


def _machine(prov: dict) -> dict:
    """The result's ``machine``: the provenance machine and versions, load average at the start."""
    m = dict(prov["machine"])
    m["loadavg_start"] = m.pop("load_average")
    m["versions"] = prov["versions"]
    return m


def run_benchmark(cfg: BenchConfig, *, command: Union[None, str, Sequence[str]] = None) -> dict:
    """Run the whole comparison and return the result document (see ``docs/he-vs-owsd.md``).

    ``command``: the command line to record (default: this process's ``sys.argv``).
    """
    cfg.validate()
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    started = time.perf_counter()
    prov = provenance.record(command=command, extra_packages=("tenseal",))
    machine = _machine(prov)
    train_all, test_all, data_info = load_data(cfg)
    rng = np.random.default_rng(cfg.seed)
    train = train_all.subset(cfg.train, rng=rng)
    test = test_all.subset(max(cfg.test, cfg.owsd_images, cfg.he_images, cfg.he_batch), rng=rng)
    acc_test = test.subset(cfg.test)
    timing_set = test.subset(cfg.owsd_images)
    he_set = test.subset(cfg.he_images)

    he = setup_he(cfg, train_all, cache_root)
    plain_full = plaintext_logits(he.net, test_all.images).argmax(1)
    plain_he_scores = plaintext_logits(he.net, he_set.images)
    ow = setup_owsd(cfg, train=train, test=acc_test, cache_root=cache_root)

    # warm-up (first calls load kernels and allocate; not timed)
    owsd_round(ow.encoder, ow.scrambler, ow.clouds, ow.internal, timing_set.subset(min(8, len(timing_set))),
               batch_size=cfg.batch_size, topk=cfg.topk, transmit=cfg.transmit)

    # timed rounds, HE and OWSD interleaved
    he_rounds: list[dict] = []
    owsd_rounds: list[dict] = []
    for r in range(cfg.repeats):
        log.info("timing round %d/%d", r + 1, cfg.repeats)
        he_rounds.append(he_round(he.client, he.server, he_set.images, verbose=cfg.verbose))
        owsd_rounds.append(owsd_round(ow.encoder, ow.scrambler, ow.clouds, ow.internal, timing_set,
                                      batch_size=cfg.batch_size, topk=cfg.topk, verbose=cfg.verbose,
                                      transmit=cfg.transmit))
    # one plaintext reference for every HE overhead factor: the network on all the run's test images, one batch
    plain_he_s = plaintext_seconds(he.net, test.images)
    batched = None
    if cfg.he_batch:
        log.info("amortized HE: %d images along the slots", cfg.he_batch)
        bset = test.subset(cfg.he_batch)
        batched = batched_round(he.net, bset.images, bset.labels, plain_seconds=plain_he_s)
    peak = matmul_peak(threads=owsd_threads.cap())
    machine["loadavg_end"] = provenance.load_average()

    he_per = he_per_round(he_rounds)
    he_doc = he_document(cfg, he, he_rounds, images=he_set, test_all=test_all, plain_scores=plain_he_scores,
                         plain_full_pred=plain_full, tenseal_version=prov["versions"].get("tenseal"))
    owsd_doc, plain_doc = owsd_documents(cfg, ow, owsd_rounds, he_total=he_per["total"], train_images=len(train),
                                         test_images=len(acc_test), timing_images=len(timing_set))
    res = assemble(cfg, machine=machine, command=prov["command"], data=data_info, he=he_doc, owsd=owsd_doc,
                   plaintext=plain_doc, he_per=he_per, owsd_per_image=[o["per_image"] for o in owsd_rounds])
    res["cloud_model"] = cloud_model_documents(ow.clouds, plain_doc, peak=peak, batch_size=cfg.batch_size)
    res["he_batched"] = batched
    res["overhead_vs_own_plaintext"] = {
        "he_single": he_doc["seconds_per_image"] / plain_he_s,
        "he_batched": None if batched is None else batched["overhead_vs_plaintext"],
        "owsd": owsd_doc["clouds"][owsd_doc["cloud"]]["ratio"]["over_plaintext"]["median"],
        "he_plaintext_seconds_per_image": plain_he_s, "he_plaintext_images": len(test),
        "definition": "HE: encrypted seconds an image (single: client + server; batched: the batch's total / its "
                      "images) over its square CNN in plaintext (torch, one thread, all the run's test images in one "
                      "batch: he_plaintext_images); OWSD: client + cloud over the "
                      "same cloud on plaintext images (median over rounds)"}
    res["wall_seconds"] = time.perf_counter() - started
    return res


__all__ = ["BenchConfig", "load_data", "run_benchmark"]
