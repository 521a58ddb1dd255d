"""The result document of ``owsd bench``: the parts put together, the ratios and the targets.

Every ratio is computed per timing round from the measured numbers, then summarized
(median, and min..max under ``ratio.spread``); the targets compare those medians with the
issue's goals.

Example:
    >>> t = targets(he_over_owsd=1200.0, worst_he_over_owsd=1100.0, client_over_cloud=0.08,
    ...             worst_client_over_cloud=0.09, he_plaintext_accuracy=0.97, owsd_accuracy=0.95)
    >>> t["owsd_client_le_10pct_of_cloud"]["met"], t["he_over_owsd_ge_1000"]["met"]
    (True, True)
"""

from __future__ import annotations

import logging

from owsd.provenance import utc_now
from owsd_bench.config import COMPARABLE_GAP, SCHEMA, BenchConfig
from owsd_bench.measure import summarize
from owsd_bench.owsd_side import client_per_round

log = logging.getLogger(__name__)


def ratios(owsd_doc: dict, *, primary: str, he_per: dict[str, list[float]], owsd_per_image: list[dict]) -> dict:
    """HE over OWSD (whole, client, server vs cloud), OWSD over plaintext, OWSD client over cloud."""
    pc = owsd_doc["clouds"][primary]
    he_over = pc["ratio"]["he_over_owsd"]
    owsd_client = client_per_round(owsd_per_image, primary)
    return {"he_over_owsd": he_over["median"],
            "he_client_over_owsd_client": summarize([a / b for a, b in zip(he_per["client"], owsd_client)])["median"],
            "he_server_over_owsd_cloud": summarize([a / p[f"cloud:{primary}"]
                                                    for a, p in zip(he_per["server"], owsd_per_image)])["median"],
            "owsd_over_plaintext": pc["ratio"]["over_plaintext"]["median"],
            "owsd_client_over_cloud": pc["ratio"]["client_over_cloud"]["median"],
            "spread": {"he_over_owsd": he_over, "owsd_over_plaintext": pc["ratio"]["over_plaintext"],
                       "owsd_client_over_cloud": pc["ratio"]["client_over_cloud"]},
            "definition": "per timing round: HE seconds per image (client + server) / OWSD seconds per image "
                          "(client + cloud), OWSD / plaintext (resize + cloud), OWSD client / OWSD cloud; "
                          "median (and min..max under spread) over rounds"}


def targets(*, he_over_owsd: float, worst_he_over_owsd: float, client_over_cloud: float,
            worst_client_over_cloud: float, he_plaintext_accuracy: float, owsd_accuracy: float) -> dict:
    """The two targets: OWSD's client <= 10% of the cloud; HE / OWSD >= 1,000x at comparable accuracy."""
    gap = he_plaintext_accuracy - owsd_accuracy
    return {
        "owsd_client_le_10pct_of_cloud": {"target": 0.10, "measured": client_over_cloud,
                                          "worst_round": worst_client_over_cloud,
                                          "met": bool(client_over_cloud <= 0.10)},
        "he_over_owsd_ge_1000": {"target": 1000.0, "measured": he_over_owsd,
                                 "worst_round": worst_he_over_owsd,
                                 "accuracy_gap_he_plaintext_minus_owsd": gap,
                                 "comparable_accuracy": bool(abs(gap) <= COMPARABLE_GAP),
                                 "comparable_definition": f"|gap| <= {COMPARABLE_GAP}",
                                 "met": bool(he_over_owsd >= 1000 and abs(gap) <= COMPARABLE_GAP)},
    }


def assemble(cfg: BenchConfig, *, machine: dict, command: str, data: dict, he: dict, owsd: dict, plaintext: dict,
             he_per: dict[str, list[float]], owsd_per_image: list[dict]) -> dict:
    """The whole document (``docs/he-vs-owsd.md`` describes each field); dated now, in UTC."""
    primary = cfg.clouds[0]
    ratio = ratios(owsd, primary=primary, he_per=he_per, owsd_per_image=owsd_per_image)
    pc = owsd["clouds"][primary]
    tg = targets(he_over_owsd=ratio["he_over_owsd"], worst_he_over_owsd=ratio["spread"]["he_over_owsd"]["min"],
                 client_over_cloud=ratio["owsd_client_over_cloud"],
                 worst_client_over_cloud=pc["ratio"]["client_over_cloud"]["max"],
                 he_plaintext_accuracy=he["accuracy_detail"]["plaintext_full_test"]["accuracy"],
                 owsd_accuracy=pc["accuracy"])
    return {"schema": SCHEMA, "date": utc_now(), "command": command, "machine": machine, "data": data,
            "config": cfg.to_dict(), "he": he, "owsd": owsd, "plaintext": plaintext, "ratio": ratio, "targets": tg}
