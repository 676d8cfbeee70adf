"""A projection learned from a shop's labels: stretch the directions that tell its classes apart.

``x -> P (x / |x| - c)`` with ``P = I + gain * U Uᵀ``: every vector is taken to unit length and centred on
the catalogue's mean direction ``c`` (learned without labels: the shared component all photos have says
nothing about which is which), then ``U``, an orthonormal (dim, m) basis of the directions that separate the labelled
classes (:mod:`lookalike.adapt.learn`). Every direction outside that subspace keeps its length, so what made
two photos near-identical (every small difference) stays small and near-duplicates still find each other;
inside it, distances grow by ``1 + gain``, so items of one class move together. The dimension stays the
same (the index's structure need not change), and the map is exactly invertible up to the length cosine
ignores, ``x / |x| = P⁻¹ v + c`` with ``P⁻¹ = I - gain / (1 + gain) U Uᵀ``: an adapted index can recover its
plain features (as unit vectors) from what it stores, to learn again or to undo, without re-embedding a
single image. Cosine indexes only, for that reason.

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
    """``x -> P (x / |x| - centre)`` on (n, dim) float32 rows; see the module docstring."""

    basis: np.ndarray
    """(dim, m) float32 with orthonormal columns."""
    gain: float
    centre: np.ndarray
    """(dim,) float32: the mean of the catalogue's unit vectors."""
    learned: dict[str, Any] = field(default_factory=dict)
    """What it was learned from (field, classes, items, holdout), recorded for the reader, never compared."""

    def __post_init__(self) -> None:
        if self.basis.ndim != 2 or self.basis.shape[1] > self.basis.shape[0]:
            raise ModelError(f"a projection basis is (dim, m) with m <= dim, not {self.basis.shape}")
        if not (np.isfinite(self.gain) and self.gain > -1.0):
            raise ModelError(f"a projection gain must be finite and above -1 (invertible), not {self.gain}")
        if self.centre.shape != (self.basis.shape[0],) or not np.isfinite(self.centre).all():
            raise ModelError(
                f"a projection centre is a finite ({self.basis.shape[0]},) vector, not {self.centre.shape}"
            )

    @property
    def dim(self) -> int:
        return int(self.basis.shape[0])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        x = self._checked(vectors)
        unit = x / np.linalg.norm(x, axis=-1, keepdims=True).clip(min=1e-12)
        return self._stretch(unit - self.centre, self.gain)

    def invert(self, vectors: np.ndarray) -> np.ndarray:
        """The plain features back (as unit vectors) from projected ones, exact up to float rounding."""
        return self._stretch(self._checked(vectors), -self.gain / (1.0 + self.gain)) + self.centre

    def _checked(self, vectors: np.ndarray) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float32)
        if x.shape[-1] != self.dim:
            raise ModelError(f"this projection takes {self.dim}-d vectors, not {x.shape[-1]}-d")
        return x

    def _stretch(self, x: np.ndarray, factor: float) -> np.ndarray:
        return np.ascontiguousarray(x + np.float32(factor) * ((x @ self.basis) @ self.basis.T), dtype=np.float32)

    def record(self) -> dict[str, Any]:
        """The JSON-safe form an index stores in its model descriptor."""
        basis = np.ascontiguousarray(self.basis, dtype="<f4").tobytes()
        centre = np.ascontiguousarray(self.centre, dtype="<f4").tobytes()
        return {
            "kind": "class-stretch",
            "version": VERSION,
            "dim": self.dim,
            "rank": int(self.basis.shape[1]),
            "gain": float(self.gain),
            "basis": base64.b64encode(basis).decode("ascii"),
            "centre": base64.b64encode(centre).decode("ascii"),
            "digest": hashlib.sha256(basis + centre).hexdigest()[:16],
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
            raw_centre = base64.b64decode(record["centre"], validate=True)
            dim = int(record["dim"])
            basis = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dim, int(record["rank"]))
            centre = np.frombuffer(raw_centre, dtype="<f4").astype(np.float32).reshape(dim)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"this index's projection record is damaged: {exc}") from None
        if hashlib.sha256(raw + raw_centre).hexdigest()[:16] != record.get("digest"):
            raise ModelError("this index's projection record is damaged: it does not match its digest")
        return cls(basis, float(record["gain"]), centre, dict(record.get("learned", {})))
