"""Your own data: ImageFolder trees and .npz files, resizing, chance, and clear errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from own_data_cases import image_folder, npz_set
from owsd import data
from owsd.cli import main
from owsd.data import DataFormatError, load_splits
from owsd.pipeline import majority_chance
from owsd.userdata import load_images, load_labelled


def test_image_folder_keeps_colour_labels_and_size(tmp_path):
    root = image_folder(tmp_path / "pets", classes=("cats", "dogs", "owls"), per_class=5, size=9)
    ds = load_labelled(root)
    assert ds.images.shape == (15, 3, 9, 9) and ds.num_classes == 3
    assert list(np.bincount(ds.labels)) == [5, 5, 5]
    first = np.asarray(Image.open(root / "cats" / "000.png"))
    np.testing.assert_array_equal(ds.images[0].transpose(1, 2, 0), first)  # colour kept, exact pixels
    assert load_labelled(root, image_size=16).images.shape == (15, 3, 16, 16)


def test_grey_folder_stays_one_channel_and_jpeg_reads(tmp_path):
    root = image_folder(tmp_path / "g", per_class=3, colour=False)
    Image.fromarray(np.full((12, 12, 3), 90, np.uint8)).save(root / "cats" / "x.jpg", quality=95)
    assert load_labelled(root).images.shape[1] == 3  # one colour image: all become RGB
    (root / "cats" / "x.jpg").unlink()
    assert load_labelled(root).images.shape == (6, 1, 12, 12)


def test_npz_labels_are_remapped_and_chance_follows_the_distribution(tmp_path):
    p = tmp_path / "s.npz"
    np.savez(p, x=np.zeros((10, 4, 4, 3), np.float32), y=np.array([5] * 8 + [9] * 2))
    ds = load_labelled(p)
    assert ds.images.shape == (10, 3, 4, 4) and ds.num_classes == 2 and list(ds.labels) == [0] * 8 + [1] * 2
    train, test = load_splits(str(p))
    assert len(train) + len(test) == 10 and set(test.labels) == {0, 1}  # stratified
    assert majority_chance(train.labels, test.labels) == pytest.approx(np.mean(test.labels == 0))


def test_python_api_load_on_a_path_and_a_name(tmp_path):
    p = npz_set(tmp_path / "d.npz", n=20)
    assert len(data.load(p)) == 20 and data.load(p, image_size=5).images.shape == (20, 1, 5, 5)
    assert data.load("digits").images.shape == (1797, 1, 8, 8)


@pytest.mark.parametrize("case, match", [
    ("empty", "no class folders"),
    ("loose", "lie directly in it"),
    ("one", "only one class"),
    ("unreadable", "cannot decode image"),
    ("mixed", "mixed sizes"),
    ("npz-one", "only one class"),
    ("npz-keys", "missing array"),
    ("npz-range", "must lie in 0..255"),
])
def test_bad_input_is_one_clear_error(tmp_path, case, match):
    root = tmp_path / "d"
    root.mkdir()
    if case == "loose":
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "a.png")
    elif case == "one":
        image_folder(root, classes=("only",), per_class=2)
    elif case in ("unreadable", "mixed"):
        image_folder(root, per_class=2)
        bad = root / "dogs" / "001.png"
        if case == "unreadable":
            bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
        else:
            Image.fromarray(np.zeros((7, 5, 3), np.uint8)).save(bad)
    elif case.startswith("npz"):
        root = tmp_path / "d.npz"
        x = np.zeros((4, 3, 3), np.int64)
        arrays = {"npz-one": dict(x=x, y=np.ones(4, int)), "npz-keys": dict(images=x),
                  "npz-range": dict(x=x + 300, y=np.arange(4))}[case]
        np.savez(root, **arrays)
    with pytest.raises(DataFormatError, match=match):
        load_labelled(root)
    if case == "mixed":  # --image-size makes mixed sizes usable
        assert load_labelled(root, image_size=6).images.shape == (4, 3, 6, 6)


def test_cli_bad_dataset_and_stray_data_dir_exit_2(tmp_path, capsys):
    image_folder(tmp_path / "one", classes=("a",), per_class=2)
    for argv, match in ((["run", "--dataset", str(tmp_path / "one")], "only one class"),
                        (["run", "--dataset", "nonsense"], "neither a built-in dataset"),
                        (["run", "--data-dir", str(tmp_path)], "'digits' is built in"),
                        (["run", "--dataset", str(tmp_path / "one"), "--data-dir", str(tmp_path)], "not used with")):
        assert main([*argv, "--out", str(tmp_path / "o"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_scramble_accepts_image_file_folder_npy_and_npz(tmp_path, capsys):
    from owsd.encoder import PCAEncoder

    root = image_folder(tmp_path / "pets", per_class=40, size=8)
    imgs = load_images(root)
    assert imgs.shape == (80, 3, 8, 8)
    PCAEncoder(64).fit(imgs.reshape(80, -1).astype(np.float32) / 255).save(tmp_path / "enc.npz")
    assert main(["keygen", "--preset", "linear", "--seed", "0", "--out", str(tmp_path / "k.json")]) == 0
    np.save(tmp_path / "x.npy", imgs[:3])
    np.savez(tmp_path / "x.npz", x=imgs[:2].transpose(0, 2, 3, 1))
    for src, n in ((root / "cats" / "000.png", 1), (root / "dogs", 40), (tmp_path / "x.npy", 3),
                   (tmp_path / "x.npz", 2)):
        out = tmp_path / "s.npy"
        assert main(["scramble", "--key", str(tmp_path / "k.json"), "--in", str(src), "--encoder",
                     str(tmp_path / "enc.npz"), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
        assert np.load(out).shape == (n, 3, 224, 224)
    capsys.readouterr()
    assert main(["scramble", "--key", str(tmp_path / "k.json"), "--in", str(root / "cats" / "000.png"),
                 "--image-size", "9", "--encoder", str(tmp_path / "enc.npz"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "fitted on images of 192 values" in err and err.count("\n") == 1


def test_run_on_a_folder_records_real_chance(tmp_path, capsys):
    root = image_folder(tmp_path / "pets", classes=("a", "b", "c"), per_class=40, size=8)
    out = tmp_path / "run"
    assert main(["run", "--dataset", str(root), "--seed", "0", "--output-sizes", "10", "--epochs", "2",
                 "--decoder", "none", "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--quiet"]) == 0, \
        capsys.readouterr().err
    r = json.loads((out / "results.json").read_text())
    assert r["num_classes"] == 3 and r["image_shape"] == [3, 8, 8] and r["transmitted"] == "float32"
    assert r["chance"] == pytest.approx(1 / 3, abs=0.01)  # 12 test images per class: majority = a third
