"""The comparison as ``owsd bench`` prints it: a Markdown table, then the ratio and target lines.

Example:
    >>> format_seconds(2.34), format_seconds(0.0085), format_seconds(7.8e-5)
    ('2.34 s', '8.5 ms', '78 µs')
    >>> format_bytes(602112), format_bytes(97406671), format_percent(0.118)
    ('602.1 kB', '97.4 MB', '11.8%')
"""

from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger(__name__)


def format_seconds(s: float) -> str:
    """Seconds in s, ms or µs, three significant digits or so."""
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} µs"


def format_bytes(b: float) -> str:
    """Bytes in B, kB or MB (powers of 1,000)."""
    b = float(b)
    if b >= 1e6:
        return f"{b / 1e6:.1f} MB"
    if b >= 1e3:
        return f"{b / 1e3:.1f} kB"
    return f"{b:.0f} B"


def _spread(st: dict, fmt: Callable[[float], str] = format_seconds) -> str:
    """``median (min–max)`` of a :func:`~owsd_bench.measure.summarize` result."""
    return f"{fmt(st['median'])} ({fmt(st['min'])}–{fmt(st['max'])})"


def format_percent(a: float) -> str:
    """A fraction as a percentage, one decimal."""
    return f"{100 * a:.1f}%"


def _row(label: str, side: dict, server_key: str, up: float, down: str, accuracy: str) -> str:
    """One pipeline's row: total time (median, spread), client and server seconds an image, bytes up and down."""
    return (f"| {label} | {_spread(side['timing']['total'])} | {format_seconds(side['client_seconds_per_image'])} "
            f"| {format_seconds(side[server_key])} | {format_bytes(up)} | {down} | {accuracy} |")


def _he_row(he: dict) -> str:
    byt, pct = format_bytes, format_percent
    hd, b = he["accuracy_detail"], he["bytes"]
    return _row("HE: TenSEAL CKKS, square-activation CNN", he, "server_seconds_per_image",
                b["client_to_server_per_image"],
                f"{byt(b['server_to_client_per_image'])} (+ {byt(b['keys_one_time'])} keys once)",
                f"{pct(hd['decrypted']['accuracy'])} on {hd['decrypted']['n']} (same net in plaintext: "
                f"{pct(hd['plaintext_full_test']['accuracy'])} on {hd['plaintext_full_test']['n']:,})")


def _owsd_row(name: str, c: dict, ow: dict) -> str:
    byt, pct = format_bytes, format_percent
    acc, b = c["accuracy_detail"], ow["bytes"]
    return _row(f"OWSD → {name}", c, "cloud_seconds_per_image", b["client_to_server_per_image"],
                f"{byt(b['server_to_client_per_image'])} (top-{b['server_to_client_topk']['k']}: "
                f"{byt(b['server_to_client_topk']['bytes'])})",
                f"{pct(acc['cloud_only']['accuracy'])} on {acc['cloud_only']['n']:,} "
                f"(+ embedding: {pct(acc['cloud_plus_embedding']['accuracy'])})")


def _plain_row(name: str, c: dict, pl: dict, ow: dict) -> str:
    return _row(f"Plaintext {name} (floor)", c, "cloud_seconds_per_image", pl["client_to_server_per_image"],
                format_bytes(ow["bytes"]["server_to_client_per_image"]), "—")


def _times(st: dict) -> str:
    return f"{st['median']:,.0f}x ({st['min']:,.0f}–{st['max']:,.0f})"


def markdown_table(res: dict) -> str:
    """The comparison as a Markdown table plus the ratio and target lines."""
    he, ow, pl, ra = res["he"], res["owsd"], res["plaintext"], res["ratio"]
    rows = ["| Pipeline (per image) | Total: median (min–max) | Client | Server / cloud | Sent up | Sent down "
            "| Accuracy |",
            "|---|---|---|---|---|---|---|",
            _he_row(he)]
    rows += [_owsd_row(name, c, ow) for name, c in ow["clouds"].items()]
    rows += [_plain_row(name, c, pl, ow) for name, c in pl["clouds"].items()]
    sp, t, pct = ra["spread"], res["targets"], format_percent
    cc, op = sp["owsd_client_over_cloud"], sp["owsd_over_plaintext"]
    gap = t["he_over_owsd_ge_1000"]["accuracy_gap_he_plaintext_minus_owsd"]
    lines = [
        "",
        f"HE / OWSD per image ({ow['cloud']}): {_times(sp['he_over_owsd'])}; "
        f"client only: {ra['he_client_over_owsd_client']:,.0f}x; "
        f"server vs cloud: {ra['he_server_over_owsd_cloud']:,.0f}x",
        f"OWSD / plaintext ({ow['cloud']}): {op['median']:.3f}x ({op['min']:.3f}–{op['max']:.3f})",
        f"OWSD client / cloud ({ow['cloud']}): {pct(cc['median'])} ({pct(cc['min'])}–{pct(cc['max'])})",
        f"Target client <= 10% of cloud: {'MET' if t['owsd_client_le_10pct_of_cloud']['met'] else 'NOT MET'}; "
        f"target HE/OWSD >= 1,000x at comparable accuracy: "
        f"{'MET' if t['he_over_owsd_ge_1000']['met'] else 'NOT MET'} "
        f"({ra['he_over_owsd']:,.0f}x; accuracy gap {100 * gap:+.1f} points)",
        f"Machine: {res['machine']['cpu_model']}, {res['machine']['cores']} cores; data {res['data']['dataset']}; "
        f"{res['config']['repeats']} rounds of {he['n_images']} HE / {ow['timing_images']} OWSD images",
    ]
    ov, hb = res.get("overhead_vs_own_plaintext"), res.get("he_batched")
    if hb:
        lines.append(f"HE amortized ({hb['images']:,} images along the slots): "
                     f"{format_seconds(hb['amortized_seconds_per_image'])} an image amortized, {format_seconds(hb['latency_seconds_per_image'])} latency, "
                     f"{format_bytes(hb['bytes']['client_to_server_per_image'])} up / "
                     f"{format_bytes(hb['bytes']['server_to_client_per_image'])} down an image, "
                     f"accuracy {pct(hb['accuracy']['accuracy'])} on {hb['accuracy']['n']:,}")
    if ov:
        batched = "not run" if ov["he_batched"] is None else f"{ov['he_batched']:,.0f}x"
        lines.append(f"Overhead vs its own plaintext network: HE single image {ov['he_single']:,.0f}x; "
                     f"HE amortized {batched}; OWSD {ov['owsd']:.3f}x")
    for name, cm in res.get("cloud_model", {}).items():
        lines.append(f"Cloud {name}: {cm['flops_per_image'] / 1e9:.3f} GFLOP an image (2 x multiply-adds), "
                     f"{cm['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s = {pct(cm['fraction_of_matmul_peak'])} of "
                     f"the torch.mm peak of this run ({cm['matmul_peak']['flops_per_s'] / 1e9:.1f} GFLOP/s, "
                     f"{cm['matmul_peak']['threads']} threads); batch {cm['batch_size']}, "
                     f"{cm['session'].get('intra_op_num_threads')} onnxruntime threads")
    return "\n".join(rows + lines) + "\n"
