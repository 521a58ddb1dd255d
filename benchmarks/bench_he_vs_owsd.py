"""OWSD against homomorphic-encryption inference, side by side (issue 8).

A thin wrapper around :mod:`owsd_bench.cli`, the same as ``owsd bench``:

    python benchmarks/bench_he_vs_owsd.py --data-dir ../shared/data --json docs/he-vs-owsd.json

prints the Markdown table (HE vs OWSD vs plaintext: seconds, bytes, accuracy, ratios,
targets) and writes the full result document.  ``--help`` lists the sizes to raise for a
longer run (``--he-images``, ``--owsd-images``, ``--repeats``, ``--train``, ``--test``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from owsd_bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
