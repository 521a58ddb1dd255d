"""Compare every figure of two ``owsd run`` or ``owsd audit`` output folders (timings and dates aside).

Used for the refactor identity check (``docs/results/refactor-identity/``): the same command
at two commits, same seeds, should give the same figures.  A folder holding ``results.json``
(``owsd run``) is compared file to file; a folder holding ``report.json`` (``owsd audit``) is
compared on ``report.json``, ``utility/utility.json`` and each ``attacks/<job>/result.json``
(jobs matched by folder name).  Every JSON leaf is compared exactly (floats as written), with
the keys of :data:`IGNORED` left out wherever they stand: wall and CPU times, dates, the
machine, versions, the command line and other provenance.  The items of a list of objects
are matched by name (:data:`ITEM_KEYS`, e.g. an audit's entries by ``job``), not position.

Usage:
    python benchmarks/compare_runs.py BEFORE AFTER [--json OUT.json] [--show N]

Prints, per file, the number of identical leaves and each leaf only one side has or that
differs; exits 0 either way (a difference is for a person to explain).

Example:
    >>> diff_trees({"a": 1, "seconds": 3, "b": [1.0, 2.0]}, {"a": 1, "seconds": 4, "b": [1.0, 2.5], "c": 0})
    {'same': 2, 'only_before': [], 'only_after': ['c'], 'different': [('b[1]', 2.0, 2.5)]}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: keys whose values are not figures of the run: timings, dates, machine and provenance
IGNORED = frozenset({
    "date", "seconds", "seconds_per_image", "cpu_seconds", "scorer_seconds", "scorer_cpu_seconds",
    "total_seconds", "elapsed", "machine", "provenance", "versions", "command", "threads", "load",
    "scoring_cost", "started", "finished", "git", "platform", "processor", "torch"})


def _ignored(key: str) -> bool:
    return key in IGNORED or key.endswith("_seconds")


#: keys that name the items of a list of objects (so that an item added or removed since does not
#: shift the others): the first key every item has, with distinct values
ITEM_KEYS = ("job", "attack", "metric", "name", "pool", "k")


def _list_ids(items: list) -> list | None:
    """Names of a list's items by :data:`ITEM_KEYS` (``None``: compare by position)."""
    if not items or not all(isinstance(x, dict) for x in items):
        return None
    for key in ITEM_KEYS:
        vals = [x.get(key) for x in items]
        if all(isinstance(v, (str, int)) for v in vals) and len(set(map(str, vals))) == len(vals):
            return [f"{key}={v}" for v in vals]
    return None


def leaves(doc: Any, prefix: str = "") -> dict[str, Any]:
    """``{path: value}`` of every leaf of a JSON document, ignored keys left out."""
    out: dict[str, Any] = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            if not _ignored(str(k)):
                out.update(leaves(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(doc, list):
        ids = _list_ids(doc)
        for i, v in enumerate(doc):
            out.update(leaves(v, f"{prefix}[{ids[i] if ids else i}]"))
        if not doc:
            out[prefix] = []
    else:
        out[prefix] = doc
    return out


def diff_trees(before: Any, after: Any) -> dict:
    """Leaves of two documents: how many are the same, which one side lacks, which differ."""
    a, b = leaves(before), leaves(after)
    same = sum(1 for k in a.keys() & b.keys() if a[k] == b[k] and type(a[k]) is type(b[k]))
    return {"same": same, "only_before": sorted(a.keys() - b.keys()), "only_after": sorted(b.keys() - a.keys()),
            "different": [(k, a[k], b[k]) for k in sorted(a.keys() & b.keys())
                          if not (a[k] == b[k] and type(a[k]) is type(b[k]))]}


def _files(folder: Path) -> dict[str, Path]:
    """The JSON files of a run or audit folder, by their path inside it."""
    if (folder / "results.json").is_file():
        return {"results.json": folder / "results.json"}
    if not (folder / "report.json").is_file():
        raise SystemExit(f"{folder}: neither results.json (owsd run) nor report.json (owsd audit)")
    out = {"report.json": folder / "report.json"}
    if (folder / "utility" / "utility.json").is_file():
        out["utility/utility.json"] = folder / "utility" / "utility.json"
    for p in sorted((folder / "attacks").glob("*/result.json")):
        out[str(p.relative_to(folder))] = p
    return out


def compare_folders(before: Path, after: Path) -> dict:
    """``{file: diff}`` for every JSON file of either folder (a file one side lacks: ``None``)."""
    fa, fb = _files(before), _files(after)
    return {name: (diff_trees(json.loads(fa[name].read_text()), json.loads(fb[name].read_text()))
                   if name in fa and name in fb else {"missing_in": "after" if name in fa else "before"})
            for name in sorted(fa.keys() | fb.keys())}


def format_comparison(result: dict, *, show: int = 40) -> str:
    lines = []
    for name, d in result.items():
        if "missing_in" in d:
            lines.append(f"{name}: only {'before' if d['missing_in'] == 'after' else 'after'}")
            continue
        n_diff = len(d["different"]) + len(d["only_before"]) + len(d["only_after"])
        lines.append(f"{name}: {d['same']} identical leaves" + ("" if not n_diff else
                     f", {len(d['different'])} different, {len(d['only_before'])} only before, "
                     f"{len(d['only_after'])} only after"))
        for k, x, y in d["different"][:show]:
            lines.append(f"  ~ {k}: {x!r} -> {y!r}")
        for side in ("only_before", "only_after"):
            keys = d[side]
            if keys:
                more = f" (+{len(keys) - show} more)" if len(keys) > show else ""
                lines.append(f"  {side.replace('_', ' ')}: {', '.join(keys[:show])}{more}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--json", type=Path, help="also write the comparison as JSON")
    p.add_argument("--show", type=int, default=40, help="leaves listed per file and kind (default 40)")
    a = p.parse_args(argv)
    result = compare_folders(a.before, a.after)
    sys.stdout.write(format_comparison(result, show=a.show))
    if a.json:
        a.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
