"""Match tiers: what a score means in this catalogue, as three words a shopper can act on.

A fixed score cut-off fails because "the appropriate distance threshold varies by query and model" (Immich
PR #21537): the same 0.8 is a re-encoded copy in one catalogue and a different dress in another. So the
thresholds are learned per catalogue (:mod:`lookalike.confidence.calibrate`) and kept with the index as the
note ``calibration``; this module holds them and applies them to a result list.

The rule, for results best first (near-duplicates already folded into one hit):

* the best result is ``same_item`` when its score plus ``gap_weight`` times its lead over the next result
  reaches ``same_item`` (a copy stands out from the catalogue's other items; a merely similar item sits among
  its peers), or when its score alone reaches ``identical``, or when geometric verification passed;
* any other result is ``same_item`` when its score alone reaches ``identical`` or verification passed (a
  score alone below that cannot tell: two photos of different jeans by one photographer on one wall score
  0.93-0.95, more than a tight crop of one photo does);
* otherwise ``similar`` when the score reaches ``none``, else ``none``.

The answer's ``match`` is the best result's tier.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Tier = Literal["none", "similar", "same_item"]
TIERS: tuple[Tier, ...] = ("none", "similar", "same_item")
"""Weakest first, so ``min_tier`` compares by position."""
NOTE = "calibration"
VERSION = 1


def tier_rank(tier: str) -> int:
    """0 for none, 1 for similar, 2 for same_item; a clear error for anything else."""
    if tier not in TIERS:
        raise ValueError(f"a tier is one of {', '.join(TIERS)}, got {tier!r}")
    return TIERS.index(tier)


def settings_digest(record: Mapping[str, Any]) -> str:
    """A short digest of what makes the index's scores what they are (model, preprocessing, focus,
    adaptation, metric): a calibration made under other settings does not apply."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Calibration:
    """The thresholds learned from one catalogue, and what they were learned from."""

    same_item: float
    """Threshold on the best result's ``score + gap_weight * gap``."""
    pair: float
    """Two catalogue items this close are candidates for one picture: folded, and listed by ``lookalike
    duplicates``, once verification confirms it (or their score reaches ``identical``)."""
    none: float
    """Best scores below this are no match at all."""
    verify_from: float
    """Scores from here up to the thresholds above are checked geometrically when an image is at hand."""
    inliers: int
    """Geometric verification passes with at least this many inliers (0: verification off)."""
    settings: str
    """:func:`settings_digest` of the index settings it was learned under."""
    gap_weight: float = 2.0
    identical: float = 0.99
    """A score alone this high is one picture (re-encoded, resized): no verification needed."""
    made: str = ""
    items: int = 0
    """Items in the index when it was learned."""
    measured: dict[str, Any] = field(default_factory=dict)
    """Counts and rates on the calibration's own examples (training figures, not an evaluation)."""

    def to_note(self) -> dict[str, Any]:
        return {"version": VERSION, **asdict(self)}

    @classmethod
    def from_note(cls, note: Mapping[str, Any]) -> Calibration | None:
        """The calibration a note holds, or None when it is from another version or malformed."""
        if note.get("version") != VERSION:
            return None
        try:
            return cls(**{key: value for key, value in note.items() if key != "version"})
        except TypeError:
            return None

    def best_tier(self, score: float, next_score: float | None, verified: bool = False) -> Tier:
        """The tier of the first result (``next_score``: the next distinct result's, None when none follows)."""
        gap = 0.0 if next_score is None else max(0.0, score - next_score)
        if verified or score >= self.identical or score + self.gap_weight * gap >= self.same_item:
            return "same_item"
        return self.other_tier(score)

    def other_tier(self, score: float, verified: bool = False) -> Tier:
        """The tier of any later result."""
        if verified or score >= self.identical:
            return "same_item"
        return "similar" if score >= self.none else "none"

    def tiers(self, scores: Sequence[float], verified: Sequence[int] = ()) -> list[Tier]:
        """The tier of each result of a list, best first (``verified``: positions that passed)."""
        out: list[Tier] = []
        for position, score in enumerate(scores):
            passed = position in verified
            if position == 0:
                following = scores[1] if len(scores) > 1 else None
                out.append(self.best_tier(score, following, passed))
            else:
                out.append(self.other_tier(score, passed))
        return out

    def needs_verification(self, score: float, tier: Tier) -> bool:
        """Whether a result is in the band where only a geometric check can tell."""
        return self.inliers > 0 and tier != "same_item" and score >= self.verify_from


def read_calibration(notes: Mapping[str, Mapping[str, Any]], digest: str) -> Calibration | None:
    """The index's calibration when it applies to the settings ``digest`` describes, else None."""
    note = notes.get(NOTE)
    calibration = Calibration.from_note(note) if note else None
    return calibration if calibration is not None and calibration.settings == digest else None
