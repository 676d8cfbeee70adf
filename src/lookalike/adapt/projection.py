"""A projection learned from a shop's labels: stretch the directions that tell its classes apart.

``P = I + gain * U Uᵀ``, with ``U`` an orthonormal (dim, m) basis of the directions that separate the labelled
classes (:mod:`lookalike.adapt.learn`). Every direction outside that subspace keeps its length, so what made
two photos near-identical (every small difference) stays small and near-duplicates still find each other;
inside it, distances grow by ``1 + gain``, so items of one class move together. The dimension stays the
same (the index's structure need not change), and the map is exactly invertible,
``P⁻¹ = I - gain / (1 + gain) U Uᵀ``: an adapted index can recover its plain features from what it stores,
to learn again or to undo, without re-embedding a single image.

The index records the projection (basis and gain, as base64 float32) in its model descriptor, so every
process that opens it projects queries the same way.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lookalike.errors import ModelError

VERSION = "1"


@dataclass(frozen=True)
class Projection:
    """``x -> x + gain * U (Uᵀ x)`` on (n, dim) float32 rows; see the module docstring."""

    basis: np.ndarray
    """(dim, m) float32 with orthonormal columns."""
    gain: float
    learned: dict[str, Any] = field(default_factory=dict)
    """What it was learned from (field, classes, items, holdout), recorded for the reader, never compared."""

    def __post_init__(self) -> None:
        if self.basis.ndim != 2 or self.basis.shape[1] > self.basis.shape[0]:
            raise ModelError(f"a projection basis is (dim, m) with m <= dim, not {self.basis.shape}")
        if not (np.isfinite(self.gain) and self.gain > -1.0):
            raise ModelError(f"a projection gain must be finite and above -1 (invertible), not {self.gain}")

    @property
    def dim(self) -> int:
        return int(self.basis.shape[0])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        return self._scale(vectors, self.gain)

    def invert(self, vectors: np.ndarray) -> np.ndarray:
        """The plain features back from projected ones (exact up to float rounding)."""
        return self._scale(vectors, -self.gain / (1.0 + self.gain))

    def _scale(self, vectors: np.ndarray, factor: float) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float32)
        if x.shape[-1] != self.dim:
            raise ModelError(f"this projection takes {self.dim}-d vectors, not {x.shape[-1]}-d")
        return np.ascontiguousarray(x + np.float32(factor) * ((x @ self.basis) @ self.basis.T), dtype=np.float32)

    def record(self) -> dict[str, Any]:
        """The JSON-safe form an index stores in its model descriptor."""
        basis = np.ascontiguousarray(self.basis, dtype="<f4")
        return {
            "kind": "class-stretch",
            "version": VERSION,
            "dim": self.dim,
            "rank": int(basis.shape[1]),
            "gain": float(self.gain),
            "basis": base64.b64encode(basis.tobytes()).decode("ascii"),
            "digest": hashlib.sha256(basis.tobytes()).hexdigest()[:16],
            "learned": dict(self.learned),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Projection:
        """The projection an index recorded; a record this version cannot read is a clear error."""
        if record.get("kind") != "class-stretch" or record.get("version") != VERSION:
            raise ModelError(
                f"this index was adapted with a projection lookalike cannot read "
                f"({record.get('kind')!r} version {record.get('version')!r})"
            )
        try:
            raw = base64.b64decode(record["basis"], validate=True)
            basis = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(int(record["dim"]), int(record["rank"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"this index's projection record is damaged: {exc}") from None
        if hashlib.sha256(raw).hexdigest()[:16] != record.get("digest"):
            raise ModelError("this index's projection record is damaged: its basis does not match its digest")
        return cls(basis, float(record["gain"]), dict(record.get("learned", {})))
