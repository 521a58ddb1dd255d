"""Cost per image of each stage of the scheme: encode, scramble, cloud, internal model.

Times one batch pass per repeat (median and spread) and reports each stage as a fraction of
the cloud's time measured in the same run (ratios, not absolute timings, are what compare
across machines).  Uses ``owsd_bench.owsd_side.owsd_round`` (the same code as ``owsd bench``), without
the HE baseline.

    python benchmarks/bench_scheme.py --cloud tiny --images 256 --json scheme.json
    python benchmarks/bench_scheme.py --data-dir ../shared/data --cloud efficientnet-lite0
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from owsd import provenance  # noqa: E402
from owsd.cloud import make_cloud  # noqa: E402
from owsd.data import load_splits  # noqa: E402
from owsd.encoder import PCAEncoder  # noqa: E402
from owsd.internal import InternalModel  # noqa: E402
from owsd.keys import generate_key  # noqa: E402
from owsd.presets import get_preset  # noqa: E402
from owsd.scrambler import Scrambler  # noqa: E402
from owsd_bench.owsd_side import owsd_round  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, help="folder holding mnist/ (digits when absent)")
    ap.add_argument("--cloud", default="tiny", choices=("tiny", "efficientnet-lite0"))
    ap.add_argument("--preset", default="default")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--train", type=int, default=500, help="images to fit the encoder and internal model on")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    prov = provenance.record()  # machine and load at the start, versions, date, command
    train, test = load_splits("mnist" if a.data_dir else "digits", a.data_dir)
    train, images = train.subset(a.train), test.subset(a.images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = generate_key(get_preset(a.preset), seed=0)
    enc = PCAEncoder(key.spec.embedding_dim).fit(train.flat())
    scr = Scrambler(key)
    cloud = make_cloud(a.cloud)
    etr = enc.encode(train.flat())
    probs = cloud.predict(scr.scramble(etr, verbose=False, out_dtype=torch.float32), verbose=False)
    internal = InternalModel(epochs=5, verbose=False).fit(probs, train.labels, etr)
    owsd_round(enc, scr, {a.cloud: cloud}, {a.cloud: internal}, images.subset(8), batch_size=a.batch_size, topk=10)
    runs = [owsd_round(enc, scr, {a.cloud: cloud}, {a.cloud: internal}, images, batch_size=a.batch_size, topk=10)
            ["per_image"] for _ in range(a.repeats)]
    stages = {"encode": "encode", "scramble": "scramble", "cloud": f"cloud:{a.cloud}", "internal": f"internal:{a.cloud}"}
    out = {**prov, "cloud": a.cloud, "preset": a.preset, "images": len(images), "repeats": a.repeats, "stages": {}}
    for name, k in stages.items():
        v = np.array([r[k] for r in runs])
        ratio = np.array([r[k] / r[stages["cloud"]] for r in runs])
        out["stages"][name] = {"seconds_per_image_median": float(np.median(v)), "min": float(v.min()),
                               "max": float(v.max()), "fraction_of_cloud_median": float(np.median(ratio))}
    client = np.array([sum(r[stages[s]] for s in ("encode", "scramble", "internal")) / r[stages["cloud"]] for r in runs])
    out["client_over_cloud_median"] = float(np.median(client))
    out["load_average_end"] = provenance.load_average()
    text = json.dumps(out, indent=2)
    sys.stdout.write(text + "\n")
    if a.json:
        a.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
