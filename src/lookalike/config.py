"""Typed settings in one place, read from ``LOOKALIKE_*`` environment variables.

Everything has a default that works on a laptop, so no configuration is needed to start.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lookalike"


class Settings(BaseSettings):
    """Process-wide defaults; command-line options override them."""

    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_", extra="ignore")

    index: Path = Path(".lookalike/index")
    """Where the embedded index lives unless ``--index`` says otherwise."""
    cache: Path = _default_cache()
    """Exported ONNX models and downloaded data sets."""
    model: str = "efficientnet-lite0"
    threads: int = 0
    """ONNX Runtime threads; 0 means one per core."""
    resnet50_weights: str | None = None
    """Local path or URL of torchvision-format ResNet50 weights."""


def get_settings() -> Settings:
    return Settings()
