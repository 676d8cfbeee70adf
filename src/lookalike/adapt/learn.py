"""Learning the directions that tell a shop's classes apart: Fisher's linear discriminant, shrunk.

The labelled items' plain features (l2-normalised) give a within-class scatter ``Sw`` (how items of one
class differ) and a between-class scatter ``Sb`` (how the class means differ). The directions ``w`` that
maximise ``wᵀ Sb w / wᵀ Sw w`` are the generalised eigenvectors of ``(Sb, Sw)``; with 1,280 dimensions and a
few thousand items ``Sw`` is poorly estimated, so it is shrunk towards a multiple of the identity
(``(1 - s) Sw + s tr(Sw) / d I``, Ledoit-Wolf style). A catalogue of c classes gives at most c - 1 such
directions; their span, orthonormalised, is the subspace :class:`~lookalike.adapt.projection.Projection`
stretches. Closed form, no labels outside the training items, no iteration to tune, seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lookalike.adapt.projection import Projection
from lookalike.errors import LookalikeError

DEFAULT_GAIN = 5.0
DEFAULT_SHRINKAGE = 0.3
MIN_PER_CLASS = 2


class AdaptError(LookalikeError):
    """Adaptation cannot be learned from what the index holds (too few labels, one class)."""


def class_directions(
    vectors: np.ndarray,
    labels: Sequence[str],
    shrinkage: float = DEFAULT_SHRINKAGE,
    rank: int | None = None,
    unit: bool = True,
) -> np.ndarray:
    """An orthonormal (dim, m) basis of the discriminant directions of ``labels``, m <= classes - 1.
    ``unit``: take the rows to unit length first (False: they are already as wanted, e.g. centred)."""
    if not 0.0 < shrinkage <= 1.0:
        raise AdaptError(f"shrinkage must be above 0 and at most 1, not {shrinkage}")
    x = np.asarray(unit_rows(vectors) if unit else vectors, dtype=np.float64)
    names, codes, counts = np.unique(
        np.asarray(labels, dtype=object).astype(str), return_inverse=True, return_counts=True
    )
    keep = counts[codes] >= MIN_PER_CLASS
    if int((counts >= MIN_PER_CLASS).sum()) < 2:
        raise AdaptError(
            f"adapting needs at least 2 classes with {MIN_PER_CLASS} or more labelled items each; "
            f"found {len(names)} class(es) over {len(codes)} item(s)"
        )
    x, codes = x[keep], codes[keep]
    dim = x.shape[1]
    overall = x.mean(axis=0)
    within = np.zeros((dim, dim))
    between = np.zeros((dim, dim))
    for code in np.unique(codes):
        members = x[codes == code]
        centre = members.mean(axis=0)
        spread = members - centre
        within += spread.T @ spread
        offset = (centre - overall)[:, None]
        between += len(members) * (offset @ offset.T)
    within /= len(x)
    between /= len(x)
    within = (1.0 - shrinkage) * within + shrinkage * (np.trace(within) / dim) * np.eye(dim)
    # Generalised symmetric eigenproblem by Cholesky: Sw = L Lᵀ, eig of L⁻¹ Sb L⁻ᵀ, w = L⁻ᵀ v.
    lower = np.linalg.cholesky(within)
    inverse = np.linalg.inv(lower)
    values, vecs = np.linalg.eigh(inverse @ between @ inverse.T)
    count = min(len(np.unique(codes)) - 1, rank or dim, dim)
    top = np.argsort(values)[::-1][:count]
    directions = inverse.T @ vecs[:, top]
    basis, _ = np.linalg.qr(directions)
    return basis.astype(np.float32)


def learn_projection(
    vectors: np.ndarray,
    labels: Sequence[str],
    gain: float = DEFAULT_GAIN,
    shrinkage: float = DEFAULT_SHRINKAGE,
    learned: dict[str, Any] | None = None,
    centre: np.ndarray | None = None,
) -> Projection:
    """The class-stretching projection of the labelled ``vectors`` (plain features, one label each),
    centred on ``centre`` (default: their own unit mean; ``adapt`` passes the whole catalogue's)."""
    if len(vectors) != len(labels):
        raise AdaptError(f"{len(vectors)} vectors but {len(labels)} labels")
    unit = unit_rows(vectors)
    centre = unit.mean(axis=0) if centre is None else np.asarray(centre, dtype=np.float32)
    basis = class_directions(unit - centre, labels, shrinkage, unit=False)
    record = {**(learned or {}), "gain": float(gain), "shrinkage": shrinkage}
    return Projection(basis, float(gain), centre, record)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """The rows taken to unit length (float32)."""
    x = np.asarray(vectors, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)


def unit_mean(vectors: np.ndarray) -> np.ndarray:
    """The mean of the rows taken to unit length: the catalogue's shared direction (no labels needed)."""
    return unit_rows(vectors).mean(axis=0, dtype=np.float64).astype(np.float32)
