"""The cloud simulation's onnxruntime settings, swept: batch size x intra-op threads x spinning.

Audits and utility runs spend most of their time in the cloud model (EfficientNet-Lite0 through
onnxruntime).  This benchmark times ``OnnxCloud._logits`` on random 224x224 images for each
setting, and reports per setting: images/s (wall and per CPU second), GFLOP/s from the graph's
own FLOP count (:mod:`owsd.onnx_flops`), and that as a fraction of the ``torch.mm`` peak measured
in the same run (one thread, and every usable core).  Ratios, not absolute times, are what
compare across runs on a shared machine: the load is recorded before and after.

Run::

    python benchmarks/bench_cloud_ort.py --json docs/results/bench_cloud_ort.json
    python benchmarks/bench_cloud_ort.py --quick          # a smaller grid, for a smoke check

Example (a one-setting grid on the tiny stand-in exported to ONNX; what the JSON holds):

    >>> import tempfile, torch
    >>> from owsd.cloud import TinyNet
    >>> p = Path(tempfile.mkdtemp()) / "tiny.onnx"
    >>> torch.onnx.export(TinyNet().eval(), torch.randn(1, 3, 32, 32), str(p), input_names=["input"],
    ...                   dynamic_axes={"input": {0: "b"}}, dynamo=False)
    >>> r = sweep(p, size=32, batches=(4,), threads=(1,), spinning=(False,), images=8, repeats=1)
    >>> sorted(r[0]) == sorted(["batch", "threads", "spinning", "images_per_s", "images_per_cpu_s",
    ...                         "gflops", "gflops_per_cpu_s"])
    True
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Iterable, List, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from owsd import provenance  # noqa: E402
from owsd import threads as owsd_threads  # noqa: E402
from owsd.onnx_flops import count_flops  # noqa: E402

log = logging.getLogger("bench_cloud_ort")


def session(path: Path, *, threads: int, spinning: bool):
    """An onnxruntime CPU session with the cloud's own options, but ``threads`` and ``spinning`` set."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _time(run, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``run()`` over ``repeats`` calls after one warm-up."""
    run()
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        run()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def sweep(path: Path, *, size: int = 224, batches: Iterable[int] = (1, 8, 32, 64, 128),
          threads: Iterable[int] = (1, 2), spinning: Iterable[bool] = (False, True),
          images: int = 256, repeats: int = 3) -> List[dict]:
    """Images/s and GFLOP/s of the ONNX model at ``path`` for every (batch, threads, spinning)."""
    flops = count_flops(path)["flops"]
    x = np.random.default_rng(0).random((images, 3, size, size), dtype=np.float32)
    rows = []
    for t in threads:
        for spin in spinning:
            sess = session(path, threads=t, spinning=spin)
            name = sess.get_inputs()[0].name
            for b in batches:
                chunks = [x[s:s + b] for s in range(0, images - images % b or b, b)]
                n = sum(len(c) for c in chunks)

                def run():
                    for c in chunks:
                        sess.run(None, {name: c})

                wall, cpu = _time(run, repeats)
                rows.append({"batch": b, "threads": t, "spinning": spin, "images_per_s": n / wall,
                             "images_per_cpu_s": n / cpu, "gflops": flops * n / wall / 1e9,
                             "gflops_per_cpu_s": flops * n / cpu / 1e9})
                log.info("batch %d threads %d spinning %s: %.1f img/s", b, t, spin, n / wall)
    return rows


def mm_peak(threads: int, n: int = 1024, repeats: int = 5) -> float:
    """``torch.mm`` GFLOP/s (median) on ``threads`` threads, float32 n x n."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    with owsd_threads.limit(threads):
        wall, _ = _time(lambda: torch.mm(a, b), repeats)
    return 2 * n ** 3 / wall / 1e9


def main(argv: Optional[List[str]] = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--quick", action="store_true", help="a smaller grid (smoke check)")
    ap.add_argument("--model", type=Path, help="an ONNX classifier (default: EfficientNet-Lite0, exported once)")
    ap.add_argument("--size", type=int, default=224)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if a.model is None:
        from owsd.cloud import efficientnet_lite0

        a.model = efficientnet_lite0().path
    cores = owsd_threads.usable_cores()
    threads = (1,) if a.quick else tuple(sorted({1, cores}))
    batches = (8, 64) if a.quick else (1, 8, 32, 64, 128)
    load_before = provenance.load_average()
    peaks = {str(t): mm_peak(t) for t in threads}
    rows = sweep(a.model, size=a.size, batches=batches, threads=threads,
                 spinning=(False,) if a.quick else (False, True), images=64 if a.quick else 128,
                 repeats=1 if a.quick else 3)
    for r in rows:
        r["fraction_of_mm_peak"] = r["gflops"] / peaks[str(r["threads"])]
    best = max(rows, key=lambda r: r["images_per_s"])
    quiet = [r for r in rows if not r["spinning"]]
    best_quiet = max(quiet, key=lambda r: r["images_per_s"])
    out = {"model": str(a.model), "flops_per_image": count_flops(a.model)["flops"],
           "mm_peak_gflops": peaks, "rows": rows, "best": best, "best_without_spinning": best_quiet,
           "machine": provenance.machine(), "load_before": load_before,
           "load_after": provenance.load_average(), "command": " ".join(["python"] + sys.argv),
           "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}}
    print(f"best: batch {best['batch']} threads {best['threads']} spinning {best['spinning']}: "
          f"{best['images_per_s']:.1f} img/s ({best['fraction_of_mm_peak']:.0%} of mm peak); "
          f"best without spinning: batch {best_quiet['batch']} threads {best_quiet['threads']}: "
          f"{best_quiet['images_per_s']:.1f} img/s")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
