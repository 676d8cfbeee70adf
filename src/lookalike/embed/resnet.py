"""ResNet50, the reference design's model: torchvision-format ImageNet weights, 2048-d pooled features.

torchvision does not import beside the torch build used here, so the network is defined in this module with
torchvision's exact parameter names (``conv1``, ``layer1.0.downsample.0`` ...), which lets it load any
torchvision ResNet50 checkpoint: a local file, or a URL fetched once through ``torch.hub``'s cache.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lookalike.embed.base import Embedder, Preprocessing
from lookalike.embed.export import cached_export, export_path, file_digest, needs_export
from lookalike.errors import ModelError

NAME = "resnet50"
DIM = 2048
WEIGHTS_URL = "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"
"""torchvision's IMAGENET1K_V2 weights (80.9% top-1)."""
PREPROCESSING = Preprocessing(resize=256, crop=224)  # ImageNet mean/std, the torchvision default


def build_resnet50(num_classes: int = 1000) -> Any:
    """A torchvision-compatible ResNet50 (v1.5: stride on the 3x3 conv) with random weights."""
    from torch import nn

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x: Any) -> Any:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            return self.relu(self.bn3(self.conv3(out)) + identity)

    class ResNet50(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            self.layer1 = self._layer(64, 3, 1)
            self.layer2 = self._layer(128, 4, 2)
            self.layer3 = self._layer(256, 6, 2)
            self.layer4 = self._layer(512, 3, 2)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2048, num_classes)

        def _layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
            downsample = None
            if stride != 1 or self.inplanes != planes * 4:
                downsample = nn.Sequential(
                    nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes * 4),
                )
            layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes * 4
            layers += [Bottleneck(self.inplanes, planes, 1, None) for _ in range(1, blocks)]
            return nn.Sequential(*layers)

        def features(self, x: Any) -> Any:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.avgpool(x).flatten(1)

        def logits(self, features: Any) -> Any:
            return self.fc(features)

    return ResNet50()


def resolve_weights(weights: str | None, cache_dir: Path) -> Path:
    """A local weights file: the path given, or the URL downloaded once into the cache."""
    source = weights or os.environ.get("LOOKALIKE_RESNET50_WEIGHTS") or WEIGHTS_URL
    if "://" not in source:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ModelError(f"ResNet50 weights file not found: {path}")
        return path
    target_dir = cache_dir / "weights"
    target = target_dir / source.rstrip("/").rsplit("/", 1)[-1]
    if target.exists():  # downloaded before: no torch needed to use it
        return target
    try:
        import torch
    except ImportError as exc:  # a new checkpoint is only worth downloading to export it, which needs torch
        raise ModelError(needs_export(NAME, export_path(cache_dir, f"{NAME}-<digest of {source}>"))) from exc
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(source, str(target), progress=False)
        return target
    except Exception as exc:
        raise ModelError(
            f"could not download ResNet50 weights from {source} ({exc}). Download the torchvision ResNet50 "
            f"checkpoint ({WEIGHTS_URL}) on a machine with internet and point LOOKALIKE_RESNET50_WEIGHTS "
            "(or --weights) at the file."
        ) from exc


def _builder(weights_file: Path) -> Any:
    def build() -> Any:
        import torch

        model = build_resnet50()
        try:
            state = torch.load(weights_file, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:
            raise ModelError(f"{weights_file} is not a torchvision ResNet50 checkpoint: {exc}") from exc
        return model.eval()

    return build


def load(cache_dir: Path, threads: int = 0, weights: str | None = None) -> Embedder:
    """ResNet50 from torchvision-format weights (path or URL), exported to ONNX on first use."""
    weights_file = resolve_weights(weights, cache_dir)
    digest = file_digest(weights_file)
    onnx_path = cached_export(
        cache_dir, f"{NAME}-{digest}", _builder(weights_file), PREPROCESSING.mean, PREPROCESSING.std
    )
    return Embedder(NAME, onnx_path, DIM, PREPROCESSING, threads, extra={"weights": digest})
