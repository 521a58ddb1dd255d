"""Security regressions: shared victims (one per kernel, built once) and the ``security`` marker.

Every test in this folder is marked ``security``; run them alone with ``pytest -m security``.
"""

from __future__ import annotations

import warnings

import pytest

from analysis.audit import AuditTarget
from attacks.registry import available_attacks

# the largest smoke sizes of the attacks pinned here (victims are cut down per attack)
SIZES = {"n_private": 500, "n_public": 300, "n_heldout": 128}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/security" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.security)


def _victim(preset: str, key_seed: int = 0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AuditTarget.from_preset(preset, seed=key_seed).build_victim(dataset="digits", **SIZES)


@pytest.fixture(scope="session")
def default_victim():
    """The default kernel (``get_preset("default")``, key from seed 0) on digits."""
    return _victim("default")


@pytest.fixture(scope="session")
def linear_victim():
    """The weak ``linear`` control (key from seed 0) on digits."""
    return _victim("linear")


@pytest.fixture
def need():
    """``need(name)``: skip when an attack is not registered (yet)."""
    def _need(name: str) -> None:
        if name not in available_attacks():
            pytest.skip(f"attack {name!r} is not registered")
    return _need
