"""Throughput of the scrambler stack: torch layer-by-layer paths vs the owsd fused kernel.

Writes, per stack and implementation, images/s (median and spread over repeats),
the ratio to the best torch path, achieved GFLOP/s and the fraction of a float32
matmul peak measured in the same run with ``torch.mm``.

Implementations (all compute exactly ``owsd.ops.reference.fused_scramble_ref``):

* ``torch_contiguous``: ``F.conv_transpose2d`` layer stack + activations +
  normalization in NCHW (this *is* the reference path);
* ``torch_channels_last``: the same with channels-last activations and weights;
* ``ext_fused``: ``owsd.ops.fused_scramble(impl="ext")`` (float32 output);
* ``ext_fused_uint8``: the same writing uint8 images;
* ``ext_fused_no_hugepages``: ``ext_fused`` with ``OWSD_OPS_HUGEPAGES=0``;
* ``ext_layers``: ``owsd.ops.conv_transpose2d(impl="ext")`` layer by layer + torch
  activations / normalization;
* ``torch_*_layers_only``: the torch conv + activation stack WITHOUT the final
  normalization (a lower bound for any torch pipeline; ratios against it are
  reported too, as ``ratio_vs_best_torch_layers_only``).

Stacks without activations (``preset_default``) also get the collapsed affine path
(``owsd.ops.collapsed_scramble``: one ``(K, P)`` matrix, one product, the normalization in
its epilogue):

* ``ext_collapsed`` / ``ext_collapsed_uint8``: the C++ kernel into a fresh output, as
  ``Scrambler`` returns it;
* ``ext_collapsed_into_buffer``: the same kernel writing into a reused buffer (``out=``,
  what a client streaming batch after batch does: no first-touch page faults);
* ``torch_collapsed``: the same matrix through ``torch.mm`` plus the epilogue in torch ops
  (the best torch path once the collapse is known; never the ``best_torch`` baseline, which
  stays layer by layer).

Ceilings measured in the same run: the ``torch.mm`` float32 rate (2048^3) and the
memory-write bandwidth (``fill_`` of a batch-sized float32 buffer: reused, and freshly
allocated, i.e. with first-touch page faults), in wall time and per process CPU second.
Every row reports the fraction of each (its own FLOPs; its output bytes) per CPU second
(``cpu_time_fractions``: on a shared machine the wall-time ceilings move with the other
jobs, the CPU-time ones much less) and ``binding_limit``, the largest of them.  A
``small_batches`` block times the fused and collapsed kernels at batches 1..64: the
collapsed matrix (``4 K P`` bytes, 38.5 MB for ``default``) is read once per batch, so it
loses at small batches.

Usage:
    python benchmarks/bench_kernel.py --json out.json
    python benchmarks/bench_kernel.py --batch 64 --repeats 5 --stacks my_stacks.json --json out.json

``--stacks`` takes a JSON file (or inline JSON) with a list of stacks::

    [{"name": "mine", "input": [64, 1, 1], "normalization": "standardize", "gain": 1.0,
      "layers": [{"cin": 64, "cout": 32, "k": 7, "s": 1, "p": 0, "op": 0, "act": "leaky_relu"}, ...]}]

When ``owsd.presets.get_preset("default")`` exists it is benchmarked as well
(best effort: a preset exposing ``layers`` with those fields, or ``to_stack()``).
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
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import owsd.ops as ops  # noqa: E402
from owsd import provenance  # noqa: E402
from owsd.ops.affine import POSTS, affine_scramble_ref, collapse_stack  # noqa: E402
from owsd.ops.reference import STD_EPS, apply_activation, fused_scramble_ref, normalize_to_image  # noqa: E402

log = logging.getLogger("bench_kernel")


def _layer(cin, cout, k, s, p, op=0, act="leaky_relu"):
    return {"cin": cin, "cout": cout, "k": k, "s": s, "p": p, "op": op, "act": act}


DEFAULT_STACKS = [
    {"name": "default_224_assumed", "input": [64, 1, 1], "normalization": "standardize", "gain": 1.0,
     "layers": [_layer(64, 32, 7, 1, 0), _layer(32, 16, 4, 2, 1), _layer(16, 16, 4, 2, 1),
                _layer(16, 8, 4, 2, 1), _layer(8, 8, 4, 2, 1), _layer(8, 3, 4, 2, 1)]},
    {"name": "small_32", "input": [64, 1, 1], "normalization": "standardize", "gain": 1.0,
     "layers": [_layer(64, 32, 4, 1, 0), _layer(32, 16, 4, 2, 1), _layer(16, 8, 4, 2, 1), _layer(8, 3, 4, 2, 1)]},
]


def preset_stack() -> Optional[dict]:
    """The stack of ``owsd.presets.get_preset("default")`` if that exists and can be read."""
    try:
        from owsd import presets  # type: ignore[attr-defined]
    except ImportError:
        return None
    get = getattr(presets, "get_preset", None)
    if get is None:
        return None
    try:
        pre = get("default")
        if hasattr(pre, "to_stack"):
            st = dict(pre.to_stack())
        elif hasattr(pre, "input_shape") and hasattr(pre, "layers"):  # owsd.spec.ScramblerSpec
            cin = int(pre.input_shape[0])
            layers = []
            for L in pre.layers:
                layers.append({"cin": cin, "cout": int(L.out_channels), "k": int(L.kernel_size),
                               "s": int(L.stride), "p": int(L.padding), "op": int(getattr(L, "output_padding", 0)),
                               "act": str(getattr(L, "activation", "none")), "bias": bool(getattr(L, "bias", True))})
                cin = int(L.out_channels)
            st = {"input": [int(v) for v in pre.input_shape], "layers": layers,
                  "normalization": str(pre.normalization), "gain": float(getattr(pre, "gain", 1.0))}
        else:
            src = pre if isinstance(pre, dict) else vars(pre)
            st = {"input": list(src["input"]), "layers": [dict(l) for l in src["layers"]],
                  "normalization": src.get("normalization", "standardize"), "gain": src.get("gain", 1.0)}
        st["name"] = "preset_default"
        return st
    except Exception as exc:  # noqa: BLE001 - the preset format is owned by another module
        log.warning("owsd.presets.get_preset('default') exists but could not be read as a stack: %s", exc)
        return None


def exact_macs(stack: dict) -> int:
    """Multiply-adds per image, counting only taps that hit a real input and output pixel."""
    c, h, w = stack["input"]
    total = 0
    for L in stack["layers"]:
        k, s, p, op = L["k"], L["s"], L["p"], L.get("op", 0)

        def taps(n_in):
            n_out = (n_in - 1) * s - 2 * p + (k - 1) + op + 1
            cnt = sum(1 for i in range(n_in) for kk in range(k) if 0 <= i * s - p + kk < n_out)
            return cnt, n_out

        th, h = taps(h)
        tw, w = taps(w)
        total += L["cin"] * L["cout"] * th * tw
        c = L["cout"]
    return total


def make_params(stack: dict, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ws, bs = [], []
    for L in stack["layers"]:
        fan = L["cin"] * L["k"] * L["k"] / (L["s"] ** 2)
        ws.append(torch.randn(L["cin"], L["cout"], L["k"], L["k"], generator=g) / fan ** 0.5)
        bs.append(torch.randn(L["cout"], generator=g) * 0.1 if L.get("bias", True) else None)
    kw = dict(strides=[L["s"] for L in stack["layers"]], paddings=[L["p"] for L in stack["layers"]],
              output_paddings=[L.get("op", 0) for L in stack["layers"]],
              activations=[L.get("act", "leaky_relu") for L in stack["layers"]],
              normalization=stack.get("normalization", "standardize"), gain=float(stack.get("gain", 1.0)))
    return ws, bs, kw


def torch_stack(x, ws, bs, kw, *, channels_last: bool, normalize: bool = True):
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        ws = [w.contiguous(memory_format=torch.channels_last) for w in ws]
    for w, b, s, p, op, act in zip(ws, bs, kw["strides"], kw["paddings"], kw["output_paddings"], kw["activations"]):
        x = apply_activation(F.conv_transpose2d(x, w, b, stride=s, padding=p, output_padding=op), act)
    if not normalize:
        return x
    return normalize_to_image(x, kw["normalization"], gain=kw["gain"])


def ext_layers(x, ws, bs, kw):
    for w, b, s, p, op, act in zip(ws, bs, kw["strides"], kw["paddings"], kw["output_paddings"], kw["activations"]):
        x = apply_activation(ops.conv_transpose2d(x, w, b, stride=s, padding=p, output_padding=op, impl="ext"), act)
    return normalize_to_image(x, kw["normalization"], gain=kw["gain"])


CPU_SECONDS: List[float] = []
"""Process CPU seconds of each call timed by the last :func:`time_fn` (same order as its wall times)."""


def time_fn(fn: Callable[[], object], repeats: int, warmup: int = 1) -> List[float]:
    """Wall seconds of ``repeats`` calls after ``warmup``; their CPU seconds go to ``CPU_SECONDS``.

    On a shared machine the wall time counts the slices other processes took; the process CPU
    time does not (with one thread it is the time the work actually ran), so the ceilings'
    fractions are also given per CPU second.
    """
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        out, cpu = [], []
        for _ in range(repeats):
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    CPU_SECONDS[:] = cpu
    return out


def matmul_peak(repeats: int = 7, n: int = 2048) -> dict:
    a, b = torch.randn(n, n), torch.randn(n, n)
    ts = time_fn(lambda: torch.mm(a, b), repeats, warmup=2)
    gf = [2 * n ** 3 / t / 1e9 for t in ts]
    return {"n": n, "gflops_median": statistics.median(gf), "gflops_max": max(gf),
            "gflops_per_cpu_s_median": 2 * n ** 3 / statistics.median(CPU_SECONDS) / 1e9}


def write_bandwidth(nbytes: int, repeats: int = 5) -> dict:
    """Memory-write bandwidth (bytes/s, median) of ``fill_`` on ``nbytes`` of float32: reused and fresh buffers."""
    n = max(1, nbytes // 4)
    buf = torch.empty(n)
    reused = statistics.median(time_fn(lambda: buf.fill_(0.5), repeats, warmup=1))
    reused_cpu = statistics.median(CPU_SECONDS)
    buf = None  # freed before the fresh-page timing
    fresh = statistics.median(time_fn(lambda: torch.empty(n).fill_(0.5), repeats, warmup=1))
    fresh_cpu = statistics.median(CPU_SECONDS)
    return {"bytes": 4 * n, "reused_bytes_per_s": 4 * n / reused, "fresh_bytes_per_s": 4 * n / fresh,
            "reused_bytes_per_cpu_s": 4 * n / reused_cpu, "fresh_bytes_per_cpu_s": 4 * n / fresh_cpu}


def collapsed_paths(stack: dict, ws, bs, kw, x: torch.Tensor) -> tuple[dict, object]:
    """The collapsed affine paths of a stack without activations (no carrier: 0.5, as the layer paths)."""
    st = collapse_stack(ws, bs, strides=kw["strides"], paddings=kw["paddings"],
                        output_paddings=kw["output_paddings"], input_shape=stack["input"])
    n = x.shape[0]
    x2 = x.reshape(n, -1)
    norm = dict(normalization=kw["normalization"], gain=kw["gain"])
    buf = torch.empty(n, *st.out_shape)

    def torch_collapsed():
        mean, sd = st.moments(x2)
        if kw["normalization"] == "standardize":
            scale, center = (kw["gain"] / (sd + STD_EPS)).float(), mean.float()
            base, post = torch.full((st.matrix.shape[1],), 0.5), POSTS["clamp"]
        else:
            scale = torch.full((n,), kw["gain"] if kw["normalization"] == "sigmoid" else 1.0)
            center, base = torch.zeros(n), None
            post = POSTS["sigmoid"] if kw["normalization"] == "sigmoid" else POSTS["clamp"]
        return affine_scramble_ref(x2, st.matrix, st.offset, scale, center, base, post, torch.float32)

    return {
        "ext_collapsed": lambda: ops.collapsed_scramble(x2, st, **norm, impl="ext"),
        "ext_collapsed_uint8": lambda: ops.collapsed_scramble(x2, st, **norm, out_dtype=torch.uint8, impl="ext"),
        "ext_collapsed_into_buffer": lambda: ops.collapsed_scramble(x2, st, **norm, impl="ext", out=buf),
        "torch_collapsed": torch_collapsed,
    }, st


def small_batches(stack: dict, repeats: int, batches=(1, 4, 16, 64)) -> List[dict]:
    """Fused vs collapsed kernels at small batches: where the collapsed matrix stops paying."""
    ws, bs, kw = make_params(stack)
    rows = []
    for b in batches:
        x = torch.randn(b, *stack["input"])
        paths, st = collapsed_paths(stack, ws, bs, kw, x)
        fused = statistics.median(time_fn(lambda: ops.fused_scramble(x, ws, bs, **kw, impl="ext"), repeats))
        coll = statistics.median(time_fn(paths["ext_collapsed"], repeats))
        rows.append({"batch": b, "ext_fused_images_per_s": b / fused, "ext_collapsed_images_per_s": b / coll,
                     "collapsed_over_fused": fused / coll,
                     "matrix_bytes_read_per_image": st.matrix.numel() * st.matrix.element_size() / b})
        log.info("%-14s batch %-4d fused %8.1f img/s  collapsed %8.1f img/s", stack["name"], b, b / fused, b / coll)
    return rows


def bench_stack(stack: dict, batch: int, repeats: int, peak: dict, ext_ok: bool,
                write_bw: Optional[dict] = None) -> dict:
    peak_gflops = peak["gflops_median"]
    ws, bs, kw = make_params(stack)
    x = torch.randn(batch, *stack["input"])
    macs = exact_macs(stack)
    linear = all(L.get("act", "leaky_relu") == "none" for L in stack["layers"])
    flops = {}  # per path when it differs from the layers' 2 x macs
    collapsed_info = None
    impls: Dict[str, Callable[[], object]] = {
        "torch_contiguous": lambda: torch_stack(x, ws, bs, kw, channels_last=False),
        "torch_channels_last": lambda: torch_stack(x, ws, bs, kw, channels_last=True),
        "torch_contiguous_layers_only": lambda: torch_stack(x, ws, bs, kw, channels_last=False, normalize=False),
        "torch_channels_last_layers_only": lambda: torch_stack(x, ws, bs, kw, channels_last=True, normalize=False),
    }
    if ext_ok:
        def no_huge():
            old = os.environ.get("OWSD_OPS_HUGEPAGES")
            os.environ["OWSD_OPS_HUGEPAGES"] = "0"
            try:
                return ops.fused_scramble(x, ws, bs, **kw, impl="ext")
            finally:
                if old is None:
                    os.environ.pop("OWSD_OPS_HUGEPAGES", None)
                else:
                    os.environ["OWSD_OPS_HUGEPAGES"] = old

        impls.update({
            "ext_fused": lambda: ops.fused_scramble(x, ws, bs, **kw, impl="ext"),
            "ext_fused_uint8": lambda: ops.fused_scramble(x, ws, bs, **kw, out_dtype=torch.uint8, impl="ext"),
            "ext_fused_no_hugepages": no_huge,
            "ext_layers": lambda: ext_layers(x, ws, bs, kw),
        })
        with torch.inference_mode():  # sanity: the fused kernel computes the reference
            got = ops.fused_scramble(x[:4], ws, bs, **kw, impl="ext")
            want = fused_scramble_ref(x[:4], ws, bs, **kw)
            max_err = (got - want).abs().max().item()
        if linear:
            cpaths, st = collapsed_paths(stack, ws, bs, kw, x)
            impls.update(cpaths)
            k, p = st.matrix.shape
            flops.update({name: 2 * k * p for name in cpaths})
            with torch.inference_mode():
                got_c = cpaths["ext_collapsed"]()[:4]
                want_c = fused_scramble_ref(x[:4].double(), [w.double() for w in ws],
                                            [None if b is None else b.double() for b in bs], **kw)
            collapsed_info = {"matrix_shape": [k, p], "matrix_bytes": st.nbytes, "flops_per_image": 2 * k * p,
                              "max_abs_err_vs_float64_ref": (got_c.double() - want_c).abs().max().item()}
    else:
        max_err = None
    rows = {}
    out_numel = None
    for name, fn in impls.items():
        ts = time_fn(fn, repeats)
        cpu_med = statistics.median(CPU_SECONDS)
        if out_numel is None:
            with torch.inference_mode():
                out_numel = fn()[0].numel()
        ips = sorted(batch / t for t in ts)
        med = statistics.median(ips)
        gflops = flops.get(name, 2 * macs) * med / 1e9
        rows[name] = {
            "images_per_s_median": med,
            "images_per_s_min": ips[0],
            "images_per_s_max": ips[-1],
            "spread_rel": (ips[-1] - ips[0]) / med,
            "seconds_per_batch_median": batch / med,
            "gflops": gflops,
            "fraction_of_mm_peak": gflops / peak_gflops,
            "images_per_cpu_s": batch / cpu_med,
        }
        if write_bw is not None:
            out_bytes = out_numel * (1 if "uint8" in name else 4)
            per_cpu = batch / cpu_med
            fr = {"mm peak": per_cpu * flops.get(name, 2 * macs) / (peak["gflops_per_cpu_s_median"] * 1e9),
                  "memory write": per_cpu * out_bytes / write_bw["reused_bytes_per_cpu_s"]}
            if "into_buffer" not in name:
                fr["memory write, fresh pages"] = per_cpu * out_bytes / write_bw["fresh_bytes_per_cpu_s"]
            rows[name].update({"fraction_of_write_bw": med * out_bytes / write_bw["reused_bytes_per_s"],
                               "cpu_time_fractions": fr, "binding_limit": max(fr, key=fr.get)})
        log.info("%-14s %-32s %9.1f img/s (%.1f..%.1f)  %.1f GFLOP/s", stack["name"], name, med, ips[0], ips[-1],
                 gflops)
    best_torch = max(("torch_contiguous", "torch_channels_last"), key=lambda k: rows[k]["images_per_s_median"])
    best_layers = max(("torch_contiguous_layers_only", "torch_channels_last_layers_only"),
                      key=lambda k: rows[k]["images_per_s_median"])
    for r in rows.values():
        r["ratio_vs_best_torch"] = r["images_per_s_median"] / rows[best_torch]["images_per_s_median"]
        r["ratio_vs_best_torch_layers_only"] = r["images_per_s_median"] / rows[best_layers]["images_per_s_median"]
    owsd_rows = [k for k in rows if k.startswith("ext_") and "uint8" not in k and "no_hugepages" not in k]
    best_owsd = max(owsd_rows, key=lambda k: rows[k]["images_per_s_median"]) if owsd_rows else None
    return {"stack": stack, "batch": batch, "threads": torch.get_num_threads(), "macs_per_image": macs,
            "flops_per_image": 2 * macs, "best_torch": best_torch, "best_torch_layers_only": best_layers,
            "best_owsd": best_owsd,
            "best_owsd_over_best_torch": None if best_owsd is None else rows[best_owsd]["ratio_vs_best_torch"],
            "ext_max_abs_err_vs_ref": max_err, "collapsed": collapsed_info, "results": rows}


def load_stacks(arg: Optional[str]) -> List[dict]:
    if not arg:
        return list(DEFAULT_STACKS)
    text = Path(arg).read_text() if Path(arg).exists() else arg
    data = json.loads(text)
    return data if isinstance(data, list) else [data]


def main(argv: Optional[List[str]] = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--stacks", help="JSON file or inline JSON list of stacks (default: 224 and 32 stacks)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--small-batch-repeats", type=int, default=3,
                    help="repeats of the small-batch (1..64) fused vs collapsed timing; 0 skips it")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    status = ops.status()
    ext_ok = status["cpu"]["impl"] == "ext" or status["extension"]["cpu_built"]
    stacks = load_stacks(args.stacks)
    pre = preset_stack()
    if pre is not None:
        stacks.append(pre)
    peak = matmul_peak()
    log.info("torch.mm float32 peak: %.1f GFLOP/s (median)", peak["gflops_median"])
    wbw = write_bandwidth(args.batch * 3 * 224 * 224 * 4)
    log.info("memory write: %.2f GB/s reused, %.2f GB/s fresh pages (%d MB)", wbw["reused_bytes_per_s"] / 1e9,
             wbw["fresh_bytes_per_s"] / 1e9, wbw["bytes"] // 10 ** 6)
    out = {
        **provenance.record(),  # date, command, machine (CPU model, cores, load, threads), versions
        "owsd_ops_status": status,
        "mm_peak": peak,
        "write_bandwidth": wbw,
        "stacks": [bench_stack(s, args.batch, args.repeats, peak, ext_ok, wbw) for s in stacks],
    }
    if ext_ok and args.small_batch_repeats > 0:
        out["small_batches"] = {s["name"]: small_batches(s, args.small_batch_repeats) for s in stacks
                                if all(L.get("act", "leaky_relu") == "none" for L in s["layers"])}
    out["load_average_end"] = provenance.load_average()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
        log.info("wrote %s", args.json)
    return out


if __name__ == "__main__":
    main()
