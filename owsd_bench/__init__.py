"""owsd_bench: the price of privacy, measured: OWSD against homomorphic-encryption inference.

A benchmark beside the scheme, not part of it: it imports :mod:`owsd` and nothing imports
it (``tests/test_layers.py``).  TenSEAL, for the HE baseline, comes with the ``[he]`` extra;
``owsd bench`` is added to the ``owsd`` command through the ``owsd.commands`` entry point.

Modules, one job each: :mod:`~owsd_bench.network` (the HE baseline's CNN in plaintext),
:mod:`~owsd_bench.ckks` (its encrypted inference), :mod:`~owsd_bench.config` (settings),
:mod:`~owsd_bench.measure` (summaries), :mod:`~owsd_bench.he_side` and
:mod:`~owsd_bench.owsd_side` (each party: setup, timed rounds, its part of the result),
:mod:`~owsd_bench.document` (ratios, targets, the whole result), :mod:`~owsd_bench.report`
(the Markdown table), :mod:`~owsd_bench.run` (one run), :mod:`~owsd_bench.cli` (the command).

Example:
    >>> from owsd_bench.measure import summarize
    >>> summarize([3.0, 1.0, 2.0])["median"]
    2.0
"""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
