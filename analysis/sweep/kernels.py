"""The kernels of a sweep: presets, spec files, and designs of a grid file over spec fields.

A grid file (JSON or YAML) names a base spec and the designs derived from it::

    base: default                 # a preset name, or a spec file (relative to the grid file)
    grid:                         # optional: the Cartesian product of these field values
      gain: [0.002, 0.01]
      carrier: [none, texture]
    designs:                      # optional: designs spelled out, each with its reason
      - name: tanh-stack
        set: {"layers.*.activation": tanh, "layers.-1.activation": none}
        reason: a bounded nonlinearity in every hidden layer

A field path is a spec field (``gain``, ``carrier``, ``embedding_dim``, ``input_shape``, ...),
``layers.N.FIELD`` (``N`` may be negative) or ``layers.*.FIELD`` (every layer); ``layers`` itself
replaces the whole stack.  Each design is validated as a :class:`~owsd.spec.ScramblerSpec`
before anything runs, and its ``name`` (made from the values when absent) names its audits.

Example:
    >>> ks = grid_kernels({"base": "linear", "grid": {"gain": [1.0, 2.0]}})
    >>> [(k.name, k.spec["gain"]) for k in ks]
    [('linear-gain-1.0', 1.0), ('linear-gain-2.0', 2.0)]
    >>> [k.name for k in kernels_from(presets=("linear",))]
    ['linear']
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from owsd.presets import PRESETS, get_preset
from owsd.safejson import loads, read_text
from owsd.spec import MAX_SPEC_BYTES, ScramblerSpec, SpecError

#: what a kernel's name may be (it names files and folders under the sweep's --out)
KERNEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")

MAX_DESIGNS = 1000
"""Most kernels one grid file may define (a grid is a product: it grows fast)."""


class GridError(ValueError):
    """A grid file is malformed, or a design in it is not a valid spec."""


@dataclass(frozen=True)
class Kernel:
    """One kernel of a sweep: a unique name, its public spec (a dict) and where it came from."""

    name: str
    spec: dict
    source: str
    reason: str = ""

    def __post_init__(self) -> None:
        # the name becomes file and folder names under --out: no separators, no "..", no hidden files
        if not KERNEL_NAME.fullmatch(self.name):
            raise GridError(f"kernel name {self.name!r} ({self.source}): use letters, digits, '.', '_' and '-' "
                            "only, starting with a letter or digit, at most 120 characters")

    def scrambler_spec(self) -> ScramblerSpec:
        """The kernel's spec as a :class:`~owsd.spec.ScramblerSpec`."""
        return ScramblerSpec.from_dict(self.spec)


def plain(spec: ScramblerSpec) -> dict:
    """A spec as plain JSON data (lists, not tuples), as a spec file holds it."""
    return json.loads(spec.to_json())


def _slug(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        v = "x".join(map(str, v))
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(v)).strip("-")[:40] or "x"


def _set_field(spec: dict, path: str, value: Any) -> None:
    parts = str(path).split(".")
    if parts[0] != "layers" or len(parts) == 1:
        if len(parts) != 1 or parts[0] in ("format", "version"):
            raise GridError(f"field path {path!r}: expected a spec field, layers.N.FIELD or layers.*.FIELD")
        spec[parts[0]] = copy.deepcopy(value)
        return
    if len(parts) != 3:
        raise GridError(f"field path {path!r}: expected layers.N.FIELD or layers.*.FIELD")
    layers = spec["layers"]
    if parts[1] == "*":
        idx = range(len(layers))
    else:
        try:
            i = int(parts[1])
            idx = [range(len(layers))[i]]
        except (ValueError, IndexError):
            raise GridError(f"field path {path!r}: no layer {parts[1]} (the spec has {len(layers)})") from None
    for i in idx:
        layers[i][parts[2]] = copy.deepcopy(value)


def _base_spec(base: Any, where: Optional[Path]) -> tuple[dict, str]:
    if isinstance(base, dict):
        return plain(ScramblerSpec.from_dict(base)), "inline spec"
    if not isinstance(base, str) or not base:
        raise GridError(f"base must be a preset name, a spec file or a spec object, got {base!r}")
    if base in PRESETS:
        return plain(get_preset(base)), f"preset {base}"
    path = Path(base) if where is None or Path(base).is_absolute() else where / base
    if not path.is_file():
        raise GridError(f"base {base!r} is neither a preset ({sorted(PRESETS)}) nor a spec file")
    return plain(ScramblerSpec.load(path)), f"spec file {path.name}"


def _design(base: dict, values: dict, *, name: str, source: str, reason: str = "") -> Kernel:
    spec = copy.deepcopy(base)
    for path in sorted(values, key=lambda p: (p.count("*") == 0, p)):  # layers.* first, then specific ones
        _set_field(spec, path, values[path])
    spec["name"] = name
    try:
        spec = plain(ScramblerSpec.from_dict(spec))
    except SpecError as exc:
        raise GridError(f"design {name!r}: {exc}") from None
    return Kernel(name=name, spec=spec, source=source, reason=reason)


def grid_kernels(doc: Any, *, where: Optional[Path] = None, source: str = "grid") -> list[Kernel]:
    """The kernels a parsed grid document defines (see the module doc)."""
    if not isinstance(doc, dict):
        raise GridError(f"a grid must be an object with 'base' and 'grid' and/or 'designs', got {type(doc).__name__}")
    unknown = sorted(set(doc) - {"format", "base", "grid", "designs", "description"})
    if unknown:
        raise GridError(f"unknown grid field(s) {unknown}; known: base, grid, designs, description")
    base, base_src = _base_spec(doc.get("base", "default"), where)
    base_name = base.get("name", "custom")
    out: list[Kernel] = []
    grid = doc.get("grid") or {}
    if not isinstance(grid, dict) or any(not isinstance(v, list) or not v for v in grid.values()):
        raise GridError("grid must map field paths to non-empty lists of values")
    if grid:
        keys = sorted(grid)
        n = 1
        for k in keys:
            n *= len(grid[k])
        if n > MAX_DESIGNS:
            raise GridError(f"the grid defines {n} designs, more than the limit of {MAX_DESIGNS}")
        for combo in itertools.product(*(grid[k] for k in keys)):
            vals = dict(zip(keys, combo))
            name = base_name + "".join(f"-{_slug(k.split('.')[-1])}-{_slug(v)}" for k, v in vals.items())
            out.append(_design(base, vals, name=name, source=f"{source}: {base_src} with {vals}"))
    designs = doc.get("designs") or []
    if not isinstance(designs, list):
        raise GridError("designs must be a list of objects with name, set and reason")
    for i, d in enumerate(designs):
        if not isinstance(d, dict) or not isinstance(d.get("set", {}), dict):
            raise GridError(f"design {i}: expected an object with 'name', 'set' (field path -> value), 'reason'")
        b, b_src = (base, base_src) if "base" not in d else _base_spec(d["base"], where)
        name = str(d.get("name") or f"{b.get('name', 'custom')}-{i}")
        out.append(_design(b, d.get("set", {}), name=name, source=f"{source}: {b_src} with {d.get('set', {})}",
                           reason=str(d.get("reason", ""))))
    if not out:
        raise GridError("the grid defines no design: give 'grid' and/or 'designs'")
    if len(out) > MAX_DESIGNS:
        raise GridError(f"the grid defines {len(out)} designs, more than the limit of {MAX_DESIGNS}")
    return out


def load_grid(path: str | Path) -> list[Kernel]:
    """The kernels of a grid file (``.json``, or ``.yaml``/``.yml``)."""
    path = Path(path)
    text = read_text(path, max_bytes=MAX_SPEC_BYTES, what="grid file", error=GridError)
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise GridError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
        loads(json.dumps(doc, default=str), source=str(path), error=GridError)  # the same nesting limit as JSON
    else:
        doc = loads(text, source=str(path), error=GridError)
    try:
        return grid_kernels(doc, where=path.parent, source=f"grid {path.name}")
    except GridError as exc:
        raise GridError(f"{path}: {exc}") from None


def kernels_from(*, presets: Sequence[str] = (), spec_files: Sequence[str | Path] = (),
                 grids: Sequence[str | Path] = ()) -> list[Kernel]:
    """Every kernel named on a sweep's command line; names must be unique (they name the audits)."""
    out = [Kernel(name=p, spec=plain(get_preset(p)), source=f"preset {p}") for p in presets]
    for f in spec_files:
        spec = ScramblerSpec.load(f)
        name = spec.name if spec.name != "custom" else Path(f).stem
        out.append(Kernel(name=name, spec={**plain(spec), "name": name}, source=f"spec file {Path(f).name}"))
    for g in grids:
        out += load_grid(g)
    seen: dict[str, str] = {}
    for k in out:
        if k.name in seen:
            raise GridError(f"two kernels are named {k.name!r} ({seen[k.name]}; {k.source}): rename one")
        seen[k.name] = k.source
    if not out:
        raise GridError("no kernel to sweep: give --presets, --spec or --grid")
    return out
