"""Fuzzing every parser a user feeds: only documented errors, never a traceback (issue 15).

Each target (``tests/fuzz_targets.py``: key files, spec JSON, .npy, .npz, IDX, image folders,
report.json) gets at least 2,000 inputs in the normal suite (derandomized hypothesis, so CI
is reproducible) and 20,000 under ``--runslow``; the inputs are byte-level mutations of real
files (bit flips, overwrites, insertions of troublesome tokens, deletions, truncations,
splices) and, for the JSON formats, structural mutations (a value anywhere replaced by an
extreme one, keys dropped or added, 100,000-level nesting; key files re-signed so mutated
specs reach the spec checks).  The ``slow`` run also drives the libFuzzer harness
``tests/fuzz/atheris_fuzz.py`` when atheris is installed.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_targets import TARGETS, check_one, corpus, prepare_dir, resign_key  # noqa: E402

SHORT, LONG = 2000, 20000
TOKENS = [b"(", b")", b"{", b"}", b"[", b"]", b"'", b'"', b"\\", b"\x00", b"\xff" * 4, b"1e11", b"-1",
          b"99999999999999999999", b"4611686018427387904", b"NaN", b"Infinity", b"'<c16'", b"'|O'",
          b"'V8'", b"'f4,i4'", b"(100000000000, 64)", b"True", b"None", b"\n", b"[" * 2000,
          b"\x1f\x8b\x08\x00", b"PK\x03\x04", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"]


# Strategies are built once: hypothesis validates every new strategy object, which dominates
# the cost when a composite builds them per draw (picks from run-time lists use integer indices).
BYTE_OPS = st.sampled_from(("flip", "set", "token", "delete", "truncate", "splice", "int32"))
TOKEN = st.sampled_from(TOKENS)
INT32 = st.sampled_from((0, 1, 2 ** 31 - 1, 2 ** 32 - 1, 2 ** 24, 10 ** 9))
ORDER = st.sampled_from(("big", "little"))
JSON_OPS = st.sampled_from(("replace", "replace", "drop", "add", "wrap", "deep"))


def _pick(draw, items: list):
    return items[draw(st.integers(0, len(items) - 1))]


@st.composite
def byte_mutants(draw, seeds: list) -> bytes:
    data = bytearray(_pick(draw, seeds))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(BYTE_OPS)
        n = len(data)
        pos = draw(st.integers(0, max(n - 1, 0)))
        if op == "flip" and n:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and n:
            data[pos] = draw(st.integers(0, 255))
        elif op == "token":
            data[pos:pos + draw(st.integers(0, 3))] = draw(TOKEN)
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[pos:]
        elif op == "splice":
            other = _pick(draw, seeds)
            at = draw(st.integers(0, max(len(other) - 1, 0)))
            data[pos:] = other[at:]
        elif op == "int32" and n >= 4:
            data[pos:pos + 4] = draw(INT32).to_bytes(4, draw(ORDER))
    return bytes(data)


EXTREMES = st.one_of(
    st.none(), st.booleans(), st.sampled_from((0, -1, 1, 3, 2 ** 31, 2 ** 62, 2 ** 64, 10 ** 30, 1.5, -0.0)),
    st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(("", "none", "standardize", "texture", "owsd-key", "owsd-audit-report", "x" * 5000)),
    st.lists(st.integers(-3, 10 ** 6), max_size=4), st.dictionaries(st.text(max_size=6), st.integers(), max_size=3))


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


@st.composite
def json_mutants(draw, seeds: list, *, resign: bool) -> bytes:
    doc = copy.deepcopy(json.loads(_pick(draw, seeds)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = _pick(draw, paths)
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        op = draw(JSON_OPS)
        if op == "replace":
            parent[path[-1]] = draw(EXTREMES)
        elif op == "drop":
            del parent[path[-1]]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(EXTREMES)
        elif op == "wrap":
            parent[path[-1]] = [parent[path[-1]]]
        elif op == "deep":
            parent[path[-1]] = "DEEP"
    if resign and isinstance(doc, dict) and draw(st.booleans()):
        doc = resign_key(doc)
    text = json.dumps(doc, allow_nan=True)
    return text.replace('"DEEP"', "[" * 100_000 + "]" * 100_000).encode()


def _strategy(name: str):
    seeds = corpus(name)
    t = TARGETS[name]
    if not t.json:
        return byte_mutants(seeds)
    return st.one_of(byte_mutants(seeds), json_mutants(seeds, resign=name == "key"))


def _fuzz(name: str, n: int, tmp_path: Path) -> int:
    target = TARGETS[name]
    path = prepare_dir(target, tmp_path / name)
    count = [0]

    @settings(max_examples=n, deadline=None, derandomize=True, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(data=_strategy(name))
    def run(data: bytes) -> None:
        count[0] += 1
        check_one(target, path, data)

    for seed in corpus(name):  # the real files themselves parse cleanly or fail as documented
        check_one(target, path, seed)
    run()
    return count[0]


@pytest.fixture
def workdir(tmp_path):
    """A scratch folder in memory when /dev/shm exists (a file write on /tmp costs ~2 ms here, 0.04 there)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        d = Path(tempfile.mkdtemp(dir=shm, prefix="owsd-fuzz-"))
        yield d
        shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_parser_short(name, workdir):
    """At least 2,000 mutated files per parser; any undocumented exception fails with the input."""
    assert _fuzz(name, SHORT, workdir) >= SHORT


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_parser_long(name, workdir):
    assert _fuzz(name, LONG, workdir) >= LONG


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_atheris_coverage_guided(name, tmp_path):
    """libFuzzer (atheris) from the same seed corpus; a finding exits non-zero with the input saved."""
    pytest.importorskip("atheris", reason="atheris is in the [fuzz] extra (.ci/run installs it)")
    script = Path(__file__).resolve().parent / "fuzz" / "atheris_fuzz.py"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, str(script), name, "-runs=20000", "-seed=1", "-rss_limit_mb=4096",
                          f"-artifact_prefix={tmp_path}/"], capture_output=True, text=True, env=env, timeout=1800,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Done 20000 runs" in out.stderr, out.stderr[-2000:]
