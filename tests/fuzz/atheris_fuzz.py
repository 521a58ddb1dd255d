"""Coverage-guided fuzzing (atheris / libFuzzer) of one parser a user feeds.

Usage (from the repository root; ``pip install -e ".[fuzz]"`` installs atheris)::

    python tests/fuzz/atheris_fuzz.py TARGET [libFuzzer options, e.g. -runs=20000 -seed=1]

``TARGET`` is one of ``tests/fuzz_targets.py``'s :data:`TARGETS` (key, spec, npy, npz, idx,
images, report).  The seed corpus (real files) is written to a scratch folder and handed to
libFuzzer; the owsd and analysis modules are instrumented for coverage.  An exception outside
the target's documented errors is a finding: libFuzzer stops, saves the input as
``crash-<sha1>`` (see ``-artifact_prefix``) and exits non-zero.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["owsd", "analysis"]):
    import fuzz_targets as ft


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in ft.TARGETS:
        sys.stderr.write(f"usage: {argv[0]} TARGET [libFuzzer options]; TARGET in {sorted(ft.TARGETS)}\n")
        raise SystemExit(2)
    target = ft.TARGETS[argv[1]]
    scratch = Path(tempfile.mkdtemp(prefix=f"owsd-atheris-{target.name}-"))
    seeds = scratch / "corpus"
    seeds.mkdir()
    for i, data in enumerate(ft.corpus(target.name)):
        (seeds / f"seed-{i}").write_bytes(data)
    path = ft.prepare_dir(target, scratch / "work")

    atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # libFuzzer ends the process itself

    def one_input(data: bytes) -> None:
        ft.check_one(target, path, data)

    atheris.Setup([argv[0], *argv[2:], str(seeds)], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
