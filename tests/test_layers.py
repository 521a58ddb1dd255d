"""The packages stand in layers that only point down: ``owsd`` <- ``attacks`` <- ``analysis`` <- ``owsd_bench``.

``owsd_bench`` (the HE-vs-OWSD benchmark) sits on top: it may import any layer below (today
it imports ``owsd`` alone), and no layer may import it.

The imports are read from the source (``ast``), function-local ones included, and so is
every string that names a module of a higher layer (``"analysis.cli"`` handed to
``importlib.import_module``), so a lazy import cannot hide an upward dependency.  The checker itself is tested on a planted violation.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"owsd": 0, "attacks": 1, "analysis": 2, "owsd_bench": 3}
_MODULE_PATH = re.compile(r"^(owsd|attacks|analysis|owsd_bench)(\.[A-Za-z_]\w*)+$")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, lazy ones and import_module calls too."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = _module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_PATH.match(node.value):
            out.append((node.lineno, node.value))  # a module named in a string, e.g. for import_module
    return out


def upward_imports(root: Path) -> list[str]:
    """Every import of a higher layer from a lower one, as 'file:line: a -> b'."""
    bad = []
    for pkg, rank in LAYERS.items():
        for path in sorted((root / pkg).rglob("*.py")):
            for line, name in imported_modules(path, root):
                top = name.split(".")[0]
                if top in LAYERS and LAYERS[top] > rank:
                    bad.append(f"{path.relative_to(root)}:{line}: {pkg} -> {name}")
    return bad


def test_layers_only_point_down():
    assert upward_imports(REPO) == []


def test_every_layer_is_read():
    """Each layer is a package with modules that import the layers below (the checker sees them)."""
    for pkg in LAYERS:
        files = sorted((REPO / pkg).rglob("*.py"))
        assert (REPO / pkg / "__init__.py") in files and len(files) > 1, pkg
    bench = {name.split(".")[0] for path in (REPO / "owsd_bench").rglob("*.py")
             for _, name in imported_modules(path, REPO)}
    assert "owsd" in bench


def test_the_scheme_has_no_benchmark_left():
    """The HE benchmark left the scheme: nothing named he/bench in owsd/."""
    left = [p.relative_to(REPO) for p in (REPO / "owsd").rglob("*.py") if p.stem in ("he", "bench")]
    assert left == []


@pytest.mark.parametrize("pkg, code", [("owsd", "from analysis.report import x"),
                                       ("owsd", "def f():\n    import attacks.base\n"),
                                       ("owsd", "import importlib\nimportlib.import_module('analysis.cli')\n"),
                                       ("owsd", "class A:\n    from attacks import base as b\n"),
                                       ("owsd", "PLUGINS = ('attacks.cli',)\n"),
                                       ("owsd", "from owsd_bench.cli import register\n"),
                                       ("owsd", "ENTRY = 'owsd_bench.cli'\n"),
                                       ("attacks", "import owsd_bench.run\n"),
                                       ("analysis", "from owsd_bench import measure\n")])
def test_checker_finds_a_planted_upward_import(tmp_path, pkg, code):
    for layer in LAYERS:
        (tmp_path / layer / "sub").mkdir(parents=True)
        (tmp_path / layer / "__init__.py").write_text("")
        (tmp_path / layer / "sub" / "__init__.py").write_text("")
    (tmp_path / pkg / "sub" / "planted.py").write_text(code)
    (tmp_path / "analysis" / "fine.py").write_text("from owsd import stats\nfrom attacks import base\n")
    (tmp_path / "owsd_bench" / "fine.py").write_text("from owsd import stats\nimport analysis.report\n")
    found = upward_imports(tmp_path)
    assert len(found) == 1 and found[0].startswith(f"{pkg}/sub/planted.py"), found
