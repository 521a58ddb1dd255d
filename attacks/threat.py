"""Threat models and target requirements, declared as data (after ART).

Example:
    >>> tm = ThreatModel(known_pairs=100, pair_input="embedding")
    >>> tm.to_dict()["known_pairs"], "100 known" in tm.describe()
    (100, True)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

PAIR_INPUTS = ("embedding", "image")
CLOSENESS = ("none", "same-distribution", "related", "unrelated")
#: models an attacker may query (``ThreatModel.queried_model``)
QUERIED_MODELS = ("internal", "cloud")


@dataclass(frozen=True)
class ThreatModel:
    """What the attacker knows and can do.

    Attributes:
        knows_architecture: the public scrambler spec (layers, shapes, normalization).
        knows_key: the victim's secret (only for upper-bound / sanity runs).
        knows_encoder: the victim's fitted encoder.
        known_pairs: (input, scrambled) pairs under the victim's key.
        pair_input: what the pairs' inputs are: ``embedding`` or ``image``.
        chosen_queries: inputs of the attacker's choice it may have scrambled.
        sees_scrambled: the scrambled images the victim sends (the attack's targets).
        cloud_outputs: the cloud's output vectors for the targets.
        labelled_examples: targets whose labels the attacker knows.
        auxiliary: what auxiliary data it holds (free text), ``None`` for none.
        auxiliary_size: how many auxiliary images.
        auxiliary_closeness: how close the auxiliary data is to the victim's (see CLOSENESS).
        candidate_pool: size of the candidate pool the attacker picks each target's original
            from (re-identification games; chance is ``1 / candidate_pool``); 0: no such game.
        model_queries: black-box queries the attacker may send to ``queried_model``; 0: none.
        queried_model: which model those queries go to: ``internal`` (the victim's internal
            model, cloud outputs -> label probabilities) or ``cloud`` (the cloud model on
            inputs of the attacker's choice); see QUERIED_MODELS.
    """

    knows_architecture: bool = True
    knows_key: bool = False
    knows_encoder: bool = False
    known_pairs: int = 0
    pair_input: Optional[str] = None
    chosen_queries: int = 0
    sees_scrambled: bool = True
    cloud_outputs: bool = False
    labelled_examples: int = 0
    auxiliary: Optional[str] = None
    auxiliary_size: int = 0
    auxiliary_closeness: str = "none"
    candidate_pool: int = 0
    model_queries: int = 0
    queried_model: Optional[str] = None

    def __post_init__(self) -> None:
        for name in ("known_pairs", "chosen_queries", "labelled_examples", "auxiliary_size", "candidate_pool",
                     "model_queries"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"threat model: {name} must be a non-negative integer, got {v!r}")
        if (self.known_pairs or self.chosen_queries) and self.pair_input not in PAIR_INPUTS:
            raise ValueError(f"threat model: pairs or queries need pair_input in {PAIR_INPUTS}, got {self.pair_input!r}")
        if self.auxiliary_closeness not in CLOSENESS:
            raise ValueError(f"threat model: auxiliary_closeness must be one of {CLOSENESS}")
        if self.auxiliary_size and not self.auxiliary:
            raise ValueError("threat model: auxiliary_size given without describing the auxiliary data")
        if self.candidate_pool == 1:
            raise ValueError("threat model: a candidate pool needs at least 2 candidates (0: no pool)")
        if self.model_queries and self.queried_model not in QUERIED_MODELS:
            raise ValueError(f"threat model: model_queries need queried_model in {QUERIED_MODELS}, "
                             f"got {self.queried_model!r}")
        if self.queried_model is not None and self.queried_model not in QUERIED_MODELS:
            raise ValueError(f"threat model: queried_model must be one of {QUERIED_MODELS} or None")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One line a person can read."""
        parts = ["knows the architecture" if self.knows_architecture else "does not know the architecture",
                 "knows the key" if self.knows_key else "does not know the key"]
        if self.knows_encoder:
            parts.append("knows the encoder")
        if self.known_pairs:
            parts.append(f"{self.known_pairs} known ({self.pair_input}, scrambled) pairs")
        if self.chosen_queries:
            parts.append(f"{self.chosen_queries} chosen-{self.pair_input} queries")
        if self.sees_scrambled:
            parts.append("sees the scrambled images")
        if self.cloud_outputs:
            parts.append("sees the cloud's output vectors")
        if self.labelled_examples:
            parts.append(f"{self.labelled_examples} labelled targets")
        if self.auxiliary:
            parts.append(f"auxiliary data: {self.auxiliary} ({self.auxiliary_size} images, {self.auxiliary_closeness})")
        if self.candidate_pool:
            parts.append(f"picks each original from {self.candidate_pool} candidates")
        if self.queried_model:
            n = f"{self.model_queries} queries" if self.model_queries else "query access"
            parts.append(f"{n} to the {'internal model' if self.queried_model == 'internal' else 'cloud model'}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Requirements:
    """What an attack needs from its target (checked before it runs)."""

    owsd_only: bool = False          # needs an OWSD channel (keys, embeddings), not any callable
    linear_scrambler: bool = False   # only valid against scramblers with no activations
    cloud: bool = False              # needs a cloud model

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
