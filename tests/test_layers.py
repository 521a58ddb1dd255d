"""The packages stand in layers that only point down: ``owsd`` <- ``attacks`` <- ``analysis`` <- ``owsd_bench``.

``owsd_bench`` (the HE-vs-OWSD benchmark) sits on top: it may import any layer below (today
it imports ``owsd`` alone), and no layer may import it.

The imports are read from the source (``ast``), function-local ones included, and so is
every string that names a module of a higher layer (``"analysis.cli"`` handed to
``importlib.import_module``), so a lazy import cannot hide an upward dependency.  Inside each
package the modules' imports (function-local ones included) must not form a cycle either: a
lazy import does not make a cycle go away, it hides it.  (A module named in a string, like the
attack registry's list of family modules, is a plugin loaded by name, not an import edge.)
The checkers themselves are tested on planted violations.
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


def _import_edges(path: Path, root: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that a file imports (``from pkg import sub`` names the submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = _module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = (".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                    if node.level else node.module or "")
            subs = {f"{base}.{a.name}" for a in node.names}
            out |= (subs & modules) | ({base} if subs - modules else set())
    return (out & modules) - {_module_name(path, root)}


def import_cycles(root: Path) -> list[str]:
    """Every cycle of imports between the modules of one package, as 'pkg: a -> b -> a'."""
    found = []
    for pkg in LAYERS:
        paths = {_module_name(p, root): p for p in sorted((root / pkg).rglob("*.py"))}
        graph = {m: _import_edges(p, root, set(paths)) for m, p in paths.items()}
        done: set[str] = set()
        for start in sorted(graph):  # depth-first search; a path back onto the stack is a cycle
            stack, on_path = [(start, iter(sorted(graph[start])))], [start]
            while stack:
                node, nxt = stack[-1]
                child = next(nxt, None)
                if child is None:
                    stack.pop()
                    on_path.pop()
                    done.add(node)
                elif child in on_path:
                    cyc = on_path[on_path.index(child):] + [child]
                    first = cyc.index(min(cyc[:-1]))  # one spelling per cycle
                    found.append(f"{pkg}: " + " -> ".join(cyc[first:-1] + cyc[:first] + [cyc[first]]))
                elif child not in done:
                    stack.append((child, iter(sorted(graph[child]))))
                    on_path.append(child)
    return sorted(set(found))


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


def test_no_import_cycle_inside_a_package():
    assert import_cycles(REPO) == []


@pytest.mark.parametrize("files, cycle", [
    ({"a.py": "from owsd.b import f\n", "b.py": "def f():\n    from owsd import a\n"},  # a lazy import
     "owsd: owsd.a -> owsd.b -> owsd.a"),
    ({"sub/a.py": "from .b import x\n", "sub/b.py": "from owsd.sub.c import y\n",
      "sub/c.py": "class K:\n    import owsd.sub.a\n"}, "owsd: owsd.sub.a -> owsd.sub.b -> owsd.sub.c -> owsd.sub.a"),
    ({"sub/__init__.py": "from owsd.sub.m import g\nX = 1\n", "sub/m.py": "from owsd.sub import X\n"},
     "owsd: owsd.sub -> owsd.sub.m -> owsd.sub"),  # a name of the package that is being imported
    ({"sub/__init__.py": "from owsd.sub.m import g\n", "sub/m.py": "from owsd.sub import other\n",
      "sub/other.py": "", "reg.py": "FAMILIES = ('owsd.sub.m',)\n"}, None),  # a submodule; a plugin by name
])
def test_checker_finds_a_planted_cycle(tmp_path, files, cycle):
    for layer in LAYERS:
        (tmp_path / layer / "sub").mkdir(parents=True)
        (tmp_path / layer / "__init__.py").write_text("")
        (tmp_path / layer / "sub" / "__init__.py").write_text("")
    for name, code in files.items():
        (tmp_path / "owsd" / name).write_text(code)
    assert import_cycles(tmp_path) == ([cycle] if cycle else [])
