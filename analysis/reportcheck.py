"""Reading ``report.json`` for ``owsd audit-compare`` without trusting it.

A report given to ``audit-compare`` may be truncated, hand-edited or not a report at all.
:func:`read_report` reads it with a size and nesting limit (:mod:`owsd.safejson`) and
:func:`check_report` verifies the type of every field the comparison reads (target, summary,
utility, dataset), so a malformed report fails with one :class:`ReportFormatError` naming
the file and the field, never with a ``KeyError`` or ``TypeError`` deep in the ranking.

Example:
    >>> check_report({"format": "owsd-audit-report", "summary": {"counts": {"fail": 1}}}, source="r.json")["summary"]
    {'counts': {'fail': 1}}
    >>> check_report({"format": "owsd-audit-report", "summary": {"counts": {"fail": -1}}}, source="r.json")
    Traceback (most recent call last):
    analysis.reportcheck.ReportFormatError: r.json: summary.counts.fail must be a non-negative integer, got -1
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from analysis.report import REPORT_FORMAT
from owsd.safejson import loads, read_text

MAX_REPORT_BYTES = 64 << 20
MAX_TEXT = 1000  # characters of a name or label


class ReportFormatError(ValueError):
    """A ``report.json`` is unreadable or lacks the structure of an owsd audit report."""


def _fail(source: str, where: str, what: str, v: Any) -> None:
    shown = repr(v) if isinstance(v, (int, float, bool, type(None))) else type(v).__name__
    raise ReportFormatError(f"{source}: {where} must be {what}, got {shown[:60]}")


def _dict(v: Any, source: str, where: str, *, optional: bool = True) -> dict:
    if v is None and optional:
        return {}
    if not isinstance(v, dict):
        _fail(source, where, "an object", v)
    return v


def _num(v: Any, source: str, where: str, *, lo: float = -math.inf, hi: float = math.inf) -> None:
    if v is None:
        return
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or not lo <= v <= hi:
        _fail(source, where, f"a finite number in [{lo:g}, {hi:g}] or null", v)


def _text(v: Any, source: str, where: str) -> None:
    if v is not None and (not isinstance(v, str) or len(v) > MAX_TEXT):
        _fail(source, where, f"a string of at most {MAX_TEXT} characters or null", v)


def check_report(doc: Any, *, source: str) -> dict:
    """``doc`` if it has the structure :func:`analysis.compare.row_of` reads; else :class:`ReportFormatError`."""
    if not isinstance(doc, dict) or doc.get("format") != REPORT_FORMAT:
        raise ReportFormatError(f"{source}: not an owsd audit report (format must be {REPORT_FORMAT!r})")
    t = _dict(doc.get("target", {}), source, "target", optional=False)
    for k in ("name", "kind", "fingerprint"):
        _text(t.get(k), source, f"target.{k}")
    _text(_dict(t.get("spec"), source, "target.spec").get("name"), source, "target.spec.name")
    _text(_dict(doc.get("dataset"), source, "dataset").get("name"), source, "dataset.name")
    for k in ("cloud", "budget"):
        _text(doc.get(k), source, k)
    s = _dict(doc.get("summary", {}), source, "summary", optional=False)
    _text(s.get("overall"), source, "summary.overall")
    for k, v in _dict(s.get("counts", {}), source, "summary.counts", optional=False).items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            _fail(source, f"summary.counts.{k}", "a non-negative integer", v)
    for k, v in _dict(s.get("max_advantage_by_family"), source, "summary.max_advantage_by_family").items():
        _num(v, source, f"summary.max_advantage_by_family.{k}")
    _num(s.get("max_reconstruction_advantage"), source, "summary.max_reconstruction_advantage")
    for k in ("kernel_verdict", "system_findings"):  # compare reads their verdicts
        d = _dict(doc.get(k), source, k)
        _text(d.get("verdict"), source, f"{k}.verdict")
    if not isinstance(_dict(doc.get("kernel_verdict"), source, "kernel_verdict").get("certified", False), bool):
        _fail(source, "kernel_verdict.certified", "true or false", doc["kernel_verdict"].get("certified"))
    u = _dict(doc.get("utility"), source, "utility")
    acc = _dict(u.get("accuracy"), source, "utility.accuracy")
    _num(acc.get("plaintext"), source, "utility.accuracy.plaintext", lo=0, hi=1)
    _num(u.get("chance"), source, "utility.chance", lo=0, hi=1)
    headline = doc.get("utility_headline")
    _num(headline, source, "utility_headline", lo=0, hi=1)
    if headline is not None:
        cloud_only = _dict(acc.get("cloud_only"), source, "utility.accuracy.cloud_only", optional=False)
        cis = _dict(_dict(u.get("accuracy_ci95"), source, "utility.accuracy_ci95", optional=False).get(
            "cloud_only"), source, "utility.accuracy_ci95.cloud_only", optional=False)
        sizes = [k for k in cloud_only if isinstance(k, str) and k.isdigit() and len(k) < 10]
        if not sizes or len(sizes) != len(cloud_only):
            _fail(source, "utility.accuracy.cloud_only", "an object keyed by output sizes", cloud_only)
        k = max(sizes, key=int)
        ci = cis.get(k)
        if not isinstance(ci, list) or len(ci) != 2:
            _fail(source, f"utility.accuracy_ci95.cloud_only.{k}", "a [low, high] pair", ci)
        for i, v in enumerate(ci):
            _num(v, source, f"utility.accuracy_ci95.cloud_only.{k}[{i}]", lo=0, hi=1)
    return doc


def read_report(run_dir: str | Path) -> dict:
    """Read and check ``report.json`` of an audit directory (or the file itself)."""
    path = Path(run_dir)
    path = path / "report.json" if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(2, "no audit report here (run `owsd audit ... --out DIR` first)", str(path))
    text = read_text(path, max_bytes=MAX_REPORT_BYTES, what="audit report", error=ReportFormatError)
    return check_report(loads(text, source=str(path), error=ReportFormatError), source=str(path))
