"""The transmission format (float32, png8, jpeg:Q): what the cloud receives, recorded in results."""

from __future__ import annotations

import json

import pytest
import torch

from owsd.cli import main
from owsd.transmission import parse_format, transmit


def test_formats_do_what_they_say():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert transmit(x, "float32") is x
    p = transmit(x, "png8")
    assert torch.equal(p * 255, torch.round(x * 255)) and (p - x).abs().max() <= 0.5 / 255 + 1e-7
    j95, j75 = transmit(x, "jpeg:95"), transmit(x, "jpeg:75")
    assert torch.equal(j95, transmit(x, "jpeg:95"))  # deterministic
    assert 0 < (j95 - x).abs().mean() < (j75 - x).abs().mean()  # lossy, more so at lower quality
    assert transmit(x[:, :1], "jpeg:90").shape == (2, 1, 16, 16)


@pytest.mark.parametrize("bad", ["jpeg", "jpeg:0", "jpeg:101", "png16", "uint8"])
def test_bad_format_is_refused(bad, tmp_path, capsys):
    with pytest.raises(ValueError, match="float32, png8 or jpeg:Q"):
        parse_format(bad)
    assert main(["run", "--transmit", bad, "--out", str(tmp_path / "o")]) == 2
    assert "--transmit" in capsys.readouterr().err


def test_run_records_the_format_and_keys_the_cache_by_it(tmp_path, capsys):
    args = ["run", "--seed", "0", "--train", "70", "--test", "30", "--output-sizes", "10", "--epochs", "2",
            "--decoder", "none", "--cache-dir", str(tmp_path / "c"), "--quiet"]
    for fmt in ("float32", "png8"):
        assert main([*args, "--transmit", fmt, "--out", str(tmp_path / fmt)]) == 0, capsys.readouterr().err
        assert json.loads((tmp_path / fmt / "results.json").read_text())["transmitted"] == fmt
    tags = sorted(p.name for p in (tmp_path / "c" / "outputs").iterdir())
    assert len(tags) == 4  # two splits, two formats: png8 never reads float32's outputs
