"""The calibration battery: audit reference scramblers whose verdicts are known, compare.

The battery (``analysis/calibration_expected.json``, shipped with the package) lists
reference kernels, from ones that send the image (identity, pixel permutation, blur,
additive noise) to ones that send nothing of it (input-independent noise, a one-time pad),
and the OWSD presets ``linear``, ``default`` and ``grey-sigmoid``, each with its expected
kernel verdict and its expected verdict per attack family, as data.  :func:`run_calibration`
audits each (:func:`analysis.audit.run_audit`, no utility measurement) and writes::

    OUT/<scrambler>/...            each audit's run directory (report.json, report.html)
    OUT/calibration.json           expected vs observed per scrambler, wall time, load, command, provenance
    OUT/calibration.md             the same as a Markdown table

The rule for budgets that cannot certify is part of the data (``rule``): an expected kernel
``pass`` is then observed as ``inconclusive``.

Example:
    >>> exp = load_expected()
    >>> len(exp["scramblers"]) >= 8, expected_kernel(exp["scramblers"][5], certified=False)
    (True, 'inconclusive')
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from tqdm.auto import tqdm

from analysis import reference_scramblers
from analysis.audit import AuditConfig, AuditTarget, run_audit
from analysis.report import load_report
from owsd import provenance
from owsd.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

EXPECTED_PATH = Path(__file__).with_name("calibration_expected.json")
FAMILIES = ("key-estimation", "inversion", "leakage")
KERNEL_VERDICTS = ("pass", "warn", "fail", "inconclusive", "n/a")
NOT_RUN = "not run"


def load_expected(path: Optional[str | Path] = None) -> dict:
    """The battery and its expected verdicts (validated: names unique, verdicts known)."""
    p = Path(path) if path is not None else EXPECTED_PATH
    try:
        doc = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: cannot read the calibration battery ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != "owsd-calibration-expected":
        raise ValueError(f"{p}: not a calibration battery (format owsd-calibration-expected)")
    names = [s.get("name") for s in doc.get("scramblers", [])]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"{p}: scrambler names must be present and unique, got {names}")
    for s in doc["scramblers"]:
        vals = [s.get("kernel")] + [v for f in FAMILIES for v in _accepted(s.get("families", {}).get(f))]
        bad = [v for v in vals if v not in KERNEL_VERDICTS]
        if bad or set(s.get("families", {})) - set(FAMILIES):
            raise ValueError(f"{p}: {s.get('name')}: unknown verdicts {bad} or families "
                             f"{sorted(set(s.get('families', {})) - set(FAMILIES))}")
    return doc


def _accepted(value: Any) -> list[str]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def expected_kernel(ref: dict, *, certified: bool) -> str:
    """The kernel verdict expected of ``ref`` by an audit that can (or cannot) certify."""
    return ref["kernel"] if certified or ref["kernel"] != "pass" else "inconclusive"


def target_for(ref: dict, *, key_seed: int = 0):
    """The :class:`~analysis.audit.AuditTarget` of a battery entry (``reference:NAME`` or ``preset:NAME``)."""
    kind, _, name = str(ref.get("target", "")).partition(":")
    if kind == "reference":
        return AuditTarget.from_callable(reference_scramblers.make(name), name=ref["name"])
    if kind == "preset":
        return AuditTarget.from_preset(name, seed=key_seed)
    raise ValueError(f"calibration target {ref.get('target')!r}: expected reference:NAME or preset:NAME")


def compare(ref: dict, report: dict) -> dict:
    """One row: expected vs observed kernel verdict and family verdicts, for one audited reference."""
    kv = report["kernel_verdict"]
    certified = bool(kv.get("certified"))
    exp_k = expected_kernel(ref, certified=certified)
    fams = {}
    for f in FAMILIES:
        obs = (kv["by_family"].get(f) or {}).get("verdict", NOT_RUN)
        acc = _accepted(ref["families"].get(f))
        fams[f] = {"expected": acc, "observed": obs, "match": obs == NOT_RUN or obs in acc}
    sf = report.get("system_findings") or {}
    errors = [e["job"] for e in report["attacks"] if e["verdict"] == "error"]  # never expected: a crash is a bug
    return {"scrambler": ref["name"], "target": ref["target"], "fingerprint": report["target"]["fingerprint"],
            "kernel": {"expected": exp_k, "observed": kv["verdict"], "match": kv["verdict"] == exp_k,
                       "reason": kv.get("reason", ""), "certified": certified},
            "families": fams, "system": sf.get("verdict"),
            "system_findings": [f"{f['job']}: {f['verdict']}" for f in sf.get("findings", [])],
            "errors": errors, "why": ref.get("why", ""),
            "match": kv["verdict"] == exp_k and all(d["match"] for d in fams.values()) and not errors}


def run_calibration(out: str | Path, *, budget: str = "smoke", dataset: str = "digits", data_dir=None,
                    cloud: Optional[str] = "tiny", seed: int = 0, only: Optional[Sequence[str]] = None,
                    scramblers: Optional[Sequence[str]] = None, threads: Optional[int] = 1,
                    verbose: bool = True, expected: Optional[str | Path] = None,
                    command: Optional[str] = None) -> dict:
    """Audit every reference of the battery (or those named in ``scramblers``); write and return the table."""
    doc = load_expected(expected)
    refs = doc["scramblers"]
    if scramblers is not None:
        unknown = sorted(set(scramblers) - {r["name"] for r in refs})
        if unknown:
            raise ValueError(f"unknown reference scrambler(s) {unknown}; the battery has {[r['name'] for r in refs]}")
        refs = [r for r in refs if r["name"] in set(scramblers)]
    out = Path(out)
    prov = provenance.record(command=command)  # machine and load at the start, versions, date
    rows, t_all = [], time.perf_counter()
    for ref in tqdm(refs, desc="calibration", unit="kernel", disable=not verbose):
        t0, c0 = time.perf_counter(), time.process_time()
        cfg = AuditConfig(out=out / ref["name"], dataset=dataset, data_dir=data_dir, cloud=cloud, budget=budget,
                          seed=seed, only=only, utility=False, verbose=False, threads=threads,
                          command=command)
        run_audit(target_for(ref), cfg)
        row = compare(ref, load_report(out / ref["name"]))
        row.update(seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0, run_dir=ref["name"])
        log.info("calibration %s: kernel %s (expected %s)", ref["name"], row["kernel"]["observed"],
                 row["kernel"]["expected"])
        rows.append(row)
    res = {"format": "owsd-calibration", "version": 1, "budget": budget, "dataset": dataset, "cloud": cloud,
           "seed": seed, "only": list(only) if only else None, "rule": doc["rule"], "rows": rows,
           "all_match": all(r["match"] for r in rows), "seconds": time.perf_counter() - t_all,
           "load_average": {"start": prov["machine"]["load_average"], "end": provenance.load_average()},
           "cpus": prov["machine"]["logical_cpus"], "command": command, "date": prov["date"],
           "machine": prov["machine"], "versions": prov["versions"]}
    atomic_write_json(out / "calibration.json", res)
    atomic_write_text(out / "calibration.md", format_markdown(res))
    return res


def _cell(d: dict) -> str:
    exp = " or ".join(d["expected"]) if isinstance(d["expected"], list) else d["expected"]
    mark = "" if d["match"] else " **MISMATCH**"
    return f"{exp} / {d['observed']}{mark}"


def format_markdown(res: dict) -> str:
    """The calibration table: expected / observed per scrambler (kernel, families, system findings)."""
    head = (f"Calibration battery: budget {res['budget']}, {res['dataset']}, cloud {res['cloud']}, attack seed "
            f"{res['seed']}" + (f", attacks {', '.join(res['only'])}" if res.get("only") else "") + ". "
            f"{'Every' if res['all_match'] else 'NOT every'} observed verdict matches its expectation. "
            f"{res['seconds']:.0f} s wall; 1-minute load average {res['load_average']['start']} at the start, "
            f"{res['load_average']['end']} at the end, {res['cpus']} CPUs.\n\n"
            "| scrambler | kernel: expected / observed | key estimation | inversion | leakage | "
            "system findings (not the kernel's) | match | wall s |\n|---|---|---|---|---|---|---|---:|\n")
    lines = []
    for r in res["rows"]:
        k = r["kernel"]
        kern = f"{k['expected']} / **{k['observed']}**" + ("" if k["match"] else " **MISMATCH**")
        fams = " | ".join(_cell(r["families"][f]) for f in FAMILIES)
        crashed = f" (crashed: {', '.join(r['errors'])})" if r.get("errors") else ""
        lines.append(f"| {r['scrambler']} (`{r['target']}`) | {kern} | {fams} | {r['system']} | "
                     f"{'yes' if r['match'] else '**no**'}{crashed} | {r['seconds']:.0f} |")
    return head + "\n".join(lines) + f"\n\nRule: {res['rule']}\n"
