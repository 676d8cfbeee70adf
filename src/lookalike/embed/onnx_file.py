"""``onnx:PATH``: any ONNX image model, described by a small JSON sidecar next to it.

The sidecar (``PATH`` with ``.json`` instead of ``.onnx``) says how to feed the model, because an ONNX file
alone does not say how its inputs were normalised::

    {"name": "my-model", "input_size": 224, "resize": 256,
     "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375],
     "input_format": "float_nchw", "output": "features"}

``mean``/``std`` are on the 0..255 scale. ``input_format`` is ``float_nchw`` (normalised floats, the usual
export) or ``uint8_nhwc`` (raw pixels; the graph normalises). Only ``input_size`` is required.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lookalike.embed.base import Embedder, Preprocessing
from lookalike.embed.export import file_digest
from lookalike.errors import ModelError


def sidecar_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".json")


def read_sidecar(onnx_path: Path) -> dict[str, Any]:
    path = sidecar_path(onnx_path)
    if not path.is_file():
        raise ModelError(
            f"{onnx_path} needs a sidecar {path} declaring at least its input_size "
            '(for example {"input_size": 224, "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]})'
        )
    try:
        spec = json.loads(path.read_text())
        if not isinstance(spec, dict) or not isinstance(spec.get("input_size"), int):
            raise ValueError("input_size (an integer) is required")
        if spec.get("input_format", "float_nchw") not in ("float_nchw", "uint8_nhwc"):
            raise ValueError("input_format must be float_nchw or uint8_nhwc")
        for key in ("mean", "std"):
            if key in spec and (not isinstance(spec[key], list) or len(spec[key]) != 3):
                raise ValueError(f"{key} must be a list of three numbers")
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise ModelError(f"bad sidecar {path}: {exc}") from exc
    return spec


def load(path: str, threads: int = 0) -> Embedder:
    """Load ``onnx:PATH`` with its sidecar; the dimension is found by running one blank image."""
    onnx_path = Path(path).expanduser()
    if not onnx_path.is_file():
        raise ModelError(f"ONNX model not found: {onnx_path}")
    spec = read_sidecar(onnx_path)
    size = spec["input_size"]
    defaults = Preprocessing()
    preprocessing = Preprocessing(
        resize=int(spec.get("resize", round(size * 256 / 224))),
        crop=size,
        mean=tuple(spec.get("mean", defaults.mean)),
        std=tuple(spec.get("std", defaults.std)),
        input_format=spec.get("input_format", "float_nchw"),
    )
    name = spec.get("name") or f"onnx:{onnx_path.stem}"
    embedder = Embedder(
        name,
        onnx_path,
        0,
        preprocessing,
        threads,
        feature_output=spec.get("output", "features"),
        extra={"weights": file_digest(onnx_path)},
    )
    import numpy as np

    try:
        probe = embedder.embed_prepared(np.zeros((1, size, size, 3), dtype=np.uint8))
    except Exception as exc:
        raise ModelError(f"{onnx_path} does not run on a {size}x{size} image: {exc}") from exc
    embedder.dim = int(probe.shape[1])
    return embedder
