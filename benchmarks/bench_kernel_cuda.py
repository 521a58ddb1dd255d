"""The scrambler on a CUDA GPU: owsd kernels against cuDNN, with the GPU's own ceilings.

For every named preset (its real key structure: spec, weights, biases, carrier) and batch
size, times with CUDA events (median over repeats, after warm-up, rotating among three
input batches so that no run re-reads the previous run's data from L2):

* ``cudnn_contiguous``: the reference pipeline, ``F.conv_transpose2d`` per layer (cuDNN,
  ``cudnn.benchmark`` on, so cuDNN picks its fastest algorithm), activations, then the
  per-image normalization and carrier in torch: exactly ``fused_scramble_ref``;
* ``cudnn_channels_last``: the same with channels-last tensors and weights;
* ``cudnn_*_layers_only``: the conv + activation stack without the normalization (a lower
  bound for any pipeline built on cuDNN);
* ``cudnn_tf32_channels_last``: TF32 allowed (NOT float32-exact: reported, never the
  baseline);
* ``owsd_fused``: ``owsd.ops.fused_scramble`` (one block per image through every layer);
* ``owsd_collapsed`` / ``owsd_collapsed_uint8``: specs without activations, the collapsed
  matrix as one product with the normalization fused into its epilogue
  (``owsd.ops.collapsed_scramble``);
* ``torch_collapsed``: the same collapsed matrix through cuBLAS (``x @ M``, TF32 off) and
  the epilogue in torch ops: the best torch path once the collapse is known.

Ceilings measured in the same run: device-to-device copy bandwidth (bytes read + written),
write bandwidth (``fill_``), and the float32 matrix rate of cuBLAS without TF32 (an FFMA
ceiling).  Each row reports images/s, the ratio to the best float32 cuDNN pipeline, the
achieved fraction of the write bandwidth (output bytes: the floor every path must pay) and
of the float32 rate (the path's own FLOPs), and which of the two binds.

Usage (on a machine with a CUDA GPU)::

    python benchmarks/bench_kernel_cuda.py --json bench_cuda.json [--batches 256 1024] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import owsd.ops as ops  # noqa: E402
from owsd import provenance  # noqa: E402
from owsd.keys import generate_key  # noqa: E402
from owsd.ops.affine import POSTS, affine_scramble_ref, collapse_stack  # noqa: E402
from owsd.ops.reference import apply_activation, fused_scramble_ref, normalize_to_image  # noqa: E402
from owsd.presets import PRESETS, get_preset  # noqa: E402
from owsd.scrambler import Scrambler  # noqa: E402

log = logging.getLogger("bench_kernel_cuda")


DEVICE = "cuda"  # --device cpu runs the same code on the CPU (a dry run of the script, not a GPU figure)


def time_cuda(fn: Callable[[int], object], *, repeats: int, warmup: int = 2) -> List[float]:
    """Seconds per call of ``fn(i)`` (i rotates the input set), timed with CUDA events."""
    with torch.inference_mode():
        for i in range(warmup):
            fn(i)
        if DEVICE != "cuda":
            out = []
            for i in range(repeats):
                t0 = time.perf_counter()
                fn(i)
                out.append(time.perf_counter() - t0)
            return out
        torch.cuda.synchronize()
        out = []
        for i in range(repeats):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn(i)
            b.record()
            b.synchronize()
            out.append(a.elapsed_time(b) / 1e3)
    return out


def ceilings(repeats: int) -> dict:
    """Copy and write bandwidth (bytes/s) and the float32 (no TF32) cuBLAS rate (FLOP/s), measured here."""
    n = 1 << 28 if DEVICE == "cuda" else 1 << 22  # 1 GiB of float32 on the GPU
    src, dst = torch.randn(n, device=DEVICE), torch.empty(n, device=DEVICE)
    t_copy = statistics.median(time_cuda(lambda i: dst.copy_(src), repeats=repeats))
    t_fill = statistics.median(time_cuda(lambda i: dst.fill_(float(i)), repeats=repeats))
    del src, dst
    torch.backends.cuda.matmul.allow_tf32 = False
    m = 8192 if DEVICE == "cuda" else 512
    a, b = torch.randn(m, m, device=DEVICE), torch.randn(m, m, device=DEVICE)
    t_mm = statistics.median(time_cuda(lambda i: a @ b, repeats=max(5, repeats // 2)))
    del a, b
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    return {"copy_bytes_per_s": 2 * 4 * n / t_copy, "write_bytes_per_s": 4 * n / t_fill,
            "fp32_matmul_flops_per_s": 2 * m ** 3 / t_mm, "matmul_n": m, "buffer_bytes": 4 * n}


def layers_only(x, ws, bs, spec, *, channels_last: bool):
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for w, b, lay in zip(ws, bs, spec.layers):
        x = torch.nn.functional.conv_transpose2d(x, w, b, stride=lay.stride, padding=lay.padding,
                                                 output_padding=lay.output_padding)
        x = apply_activation(x, lay.activation)
    return x


def bench_preset(name: str, batch: int, repeats: int, ceil: dict) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = generate_key(get_preset(name), seed=0)
    spec = key.spec
    scr = Scrambler(key, device=DEVICE, collapse="never")
    ws, bs, carrier = scr.weights, scr.biases, scr.carrier
    ws_cl = [w.contiguous(memory_format=torch.channels_last) for w in ws]
    g = torch.Generator(device=DEVICE).manual_seed(batch)
    xs = [torch.randn(batch, spec.embedding_dim, device=DEVICE, generator=g) for _ in range(3)]
    x4 = [x.reshape(batch, *spec.input_shape) for x in xs]
    geo = dict(strides=[l.stride for l in spec.layers], paddings=[l.padding for l in spec.layers],
               output_paddings=[l.output_padding for l in spec.layers],
               activations=[l.activation for l in spec.layers])
    norm = dict(normalization=spec.normalization, gain=float(spec.gain), carrier=carrier)
    out_numel = int(torch.tensor(spec.output_shape()).prod())
    linear = all(l.activation == "none" for l in spec.layers)

    def full(i, w, cl):
        y = layers_only(x4[i % 3], w, bs, spec, channels_last=cl)
        return normalize_to_image(y, spec.normalization, gain=float(spec.gain), carrier=carrier)

    paths: Dict[str, Callable[[int], object]] = {
        "cudnn_contiguous": lambda i: full(i, ws, False),
        "cudnn_channels_last": lambda i: full(i, ws_cl, True),
        "cudnn_contiguous_layers_only": lambda i: layers_only(x4[i % 3], ws, bs, spec, channels_last=False),
        "cudnn_channels_last_layers_only": lambda i: layers_only(x4[i % 3], ws_cl, bs, spec, channels_last=True),
        "owsd_fused": lambda i: ops.fused_scramble(x4[i % 3], ws, bs, **geo, **norm, impl="ext"),
    }
    flops = {k: 2 * exact_macs(spec) for k in paths}
    errors: Dict[str, float] = {}
    want = fused_scramble_ref(x4[0][:8].double(), [w.double() for w in ws],
                              [None if b is None else b.double() for b in bs], **geo,
                              normalization=spec.normalization, gain=float(spec.gain),
                              carrier=None if carrier is None else carrier.double())
    if linear:
        st = collapse_stack(ws, bs, strides=geo["strides"], paddings=geo["paddings"],
                            output_paddings=geo["output_paddings"], input_shape=spec.input_shape)
        k = st.matrix.shape[0]

        def torch_collapsed(i):
            x = xs[i % 3]
            mean, sd = st.moments(x)
            scale, center = (float(spec.gain) / (sd + 1e-6)).float(), mean.float()
            base = carrier.reshape(-1) if carrier is not None else None
            post = POSTS["clamp"] if spec.normalization != "sigmoid" else POSTS["sigmoid"]
            if spec.normalization != "standardize":
                scale = torch.full_like(scale, float(spec.gain) if spec.normalization == "sigmoid" else 1.0)
                center = torch.zeros_like(center)
            elif base is None:
                base = torch.full((st.matrix.shape[1],), 0.5, device=DEVICE)
            y = affine_scramble_ref(x, st.matrix, st.offset, scale, center, base, post, torch.float32)
            return y.reshape(x.shape[0], *st.out_shape)

        paths["owsd_collapsed"] = lambda i: ops.collapsed_scramble(xs[i % 3], st, **norm, impl="ext")
        paths["owsd_collapsed_uint8"] = lambda i: ops.collapsed_scramble(xs[i % 3], st, **norm,
                                                                         out_dtype=torch.uint8, impl="ext")
        paths["torch_collapsed"] = torch_collapsed
        for p in ("owsd_collapsed", "owsd_collapsed_uint8", "torch_collapsed"):
            flops[p] = 2 * k * out_numel
    with torch.inference_mode():
        for p, fn in paths.items():
            if "layers_only" in p or "uint8" in p:
                continue
            got = fn(0)[:8].double()
            errors[p] = float((got - want).abs().max())
    rows = {}
    for p, fn in paths.items():
        ts = time_cuda(fn, repeats=repeats)
        rows[p] = row(batch, ts, flops[p], out_numel * (1 if "uint8" in p else 4), ceil)
        log.info("%-13s b=%-5d %-32s %12.0f img/s  write %5.1f%%  fp32 %5.1f%%", name, batch, p,
                 rows[p]["images_per_s"], 100 * rows[p]["fraction_of_write_bw"],
                 100 * rows[p]["fraction_of_fp32_rate"])
    torch.backends.cudnn.allow_tf32 = True
    try:
        ts = time_cuda(lambda i: full(i, ws_cl, True), repeats=repeats)
        rows["cudnn_tf32_channels_last"] = row(batch, ts, flops["cudnn_contiguous"], out_numel * 4, ceil)
    finally:
        torch.backends.cudnn.allow_tf32 = False
    best = max(("cudnn_contiguous", "cudnn_channels_last"), key=lambda p: rows[p]["images_per_s"])
    for r in rows.values():
        r["ratio_vs_best_cudnn"] = r["images_per_s"] / rows[best]["images_per_s"]
    return {"preset": name, "batch": batch, "linear": linear, "flops_per_image_layers": 2 * exact_macs(spec),
            "output_bytes_per_image_f32": out_numel * 4, "best_cudnn": best, "max_abs_err_vs_float64": errors,
            "results": rows}


def row(batch: int, ts: List[float], flops_per_image: float, out_bytes: int, ceil: dict) -> dict:
    med = statistics.median(ts)
    ips = batch / med
    fw = ips * out_bytes / ceil["write_bytes_per_s"]
    ff = ips * flops_per_image / ceil["fp32_matmul_flops_per_s"]
    return {"images_per_s": ips, "ms_per_batch_median": 1e3 * med, "ms_per_batch_min": 1e3 * min(ts),
            "ms_per_batch_max": 1e3 * max(ts), "fraction_of_write_bw": fw, "fraction_of_fp32_rate": ff,
            "binding_limit": "memory (output writes)" if fw >= ff else "fp32 arithmetic"}


def exact_macs(spec) -> int:
    """Multiply-adds an image, counting only taps that hit a real input and output pixel."""
    c, h, w = spec.input_shape
    total = 0
    for lay in spec.layers:
        k, s, p, op = lay.kernel_size, lay.stride, lay.padding, lay.output_padding

        def taps(n_in):
            n_out = (n_in - 1) * s - 2 * p + (k - 1) + op + 1
            return sum(1 for i in range(n_in) for kk in range(k) if 0 <= i * s - p + kk < n_out), n_out

        th, h = taps(h)
        tw, w = taps(w)
        total += c * lay.out_channels * th * tw
        c = lay.out_channels
    return total


def main(argv: Optional[List[str]] = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--batches", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--presets", nargs="+", default=sorted(PRESETS))
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu: a dry run of this script on the CPU (its figures are not GPU figures)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_kernel_cuda: no CUDA device (torch.cuda.is_available() is False)")
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    status = ops.status()
    if status[DEVICE]["impl"] != "ext":
        raise SystemExit(f"bench_kernel_cuda: owsd {DEVICE} kernels unavailable: {status[DEVICE]['reason']}")
    ceil = ceilings(args.repeats)
    log.info("ceilings: copy %.0f GB/s, write %.0f GB/s, fp32 matmul %.1f TFLOP/s", ceil["copy_bytes_per_s"] / 1e9,
             ceil["write_bytes_per_s"] / 1e9, ceil["fp32_matmul_flops_per_s"] / 1e12)
    out = {**provenance.record(), "device": DEVICE, "ceilings": ceil, "owsd_ops_status": status, "runs": []}
    # provenance: date, command, machine (CPU, load; GPUs with their driver and clocks), versions
    for name in args.presets:
        for b in args.batches:
            t0 = time.perf_counter()
            out["runs"].append(bench_preset(name, b, args.repeats, ceil))
            log.info("%s b=%d done in %.1f s", name, b, time.perf_counter() - t0)
            if args.json:  # after every run, so that a time limit loses nothing measured
                Path(args.json).write_text(json.dumps(out, indent=2))
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
        log.info("wrote %s", args.json)
    summary(out)
    return out


def summary(out: dict) -> None:
    """A short table: preset, batch, best owsd path vs best float32 cuDNN pipeline."""
    print(f"\n{'preset':13s} {'batch':>5s} {'best cuDNN img/s':>17s} {'owsd path':>22s} {'img/s':>11s} "
          f"{'ratio':>6s} {'write%':>6s} {'fp32%':>6s}  binds")
    for r in out["runs"]:
        res = r["results"]
        owsd = max((p for p in res if p.startswith("owsd") and "uint8" not in p), key=lambda p: res[p]["images_per_s"])
        b = res[r["best_cudnn"]]
        o = res[owsd]
        print(f"{r['preset']:13s} {r['batch']:5d} {b['images_per_s']:17.0f} {owsd:>22s} {o['images_per_s']:11.0f} "
              f"{o['ratio_vs_best_cudnn']:6.2f} {100 * o['fraction_of_write_bw']:6.1f} "
              f"{100 * o['fraction_of_fp32_rate']:6.1f}  {o['binding_limit']}")


if __name__ == "__main__":
    main()
