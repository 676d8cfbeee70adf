"""Match confidence: calibrated tiers (same item / similar / none), near-duplicate folding, verification."""

from lookalike.confidence.tiers import NOTE, TIERS, Calibration, Tier, read_calibration, tier_rank

__all__ = ["NOTE", "TIERS", "Calibration", "Tier", "read_calibration", "tier_rank"]
