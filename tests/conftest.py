"""Shared fixtures: a per-run model cache, the real default model, and small generated catalogues."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.config import get_settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# The suite runs on EfficientNet-Lite0, the fastest model, wherever a test leaves the model to the settings
# (the CLI and API tests build indexes with the default); test_default_model checks the real default.
# Set before anything reads the settings, and inherited by the subprocesses tests start.
os.environ.setdefault("LOOKALIKE_MODEL", "efficientnet-lite0")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exported ONNX files for this run: tests never depend on, or write to, the user's cache."""
    path = tmp_path_factory.mktemp("lookalike-cache")
    os.environ["LOOKALIKE_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def lite0(cache_dir: Path):
    """EfficientNet-Lite0 (packaged ImageNet weights), the suite's model, exported once per test run."""
    from lookalike.embed import load_embedder

    return load_embedder("efficientnet-lite0", cache_dir=cache_dir)


def make_photo(seed: int, size: tuple[int, int] = (320, 400), fmt: str = "JPEG") -> bytes:
    """A synthetic 'product photo': a coloured shape on a light background, different per seed."""
    rng = np.random.default_rng(seed)
    width, height = size
    background = np.full((height, width, 3), 235, dtype=np.uint8)
    colour = rng.integers(0, 255, size=3, dtype=np.uint8)
    top, left = rng.integers(10, height // 3), rng.integers(10, width // 3)
    bottom, right = rng.integers(2 * height // 3, height - 10), rng.integers(2 * width // 3, width - 10)
    background[top:bottom, left:right] = colour
    stripes = rng.integers(2, 12)
    background[top:bottom:stripes, left:right] = 255 - colour
    buffer = io.BytesIO()
    Image.fromarray(background).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """Twelve synthetic photos in two subfolders."""
    root = tmp_path / "catalogue"
    for seed in range(12):
        folder = root / ("tops" if seed % 2 else "shoes")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"item-{seed:02d}.jpg").write_bytes(make_photo(seed))
    return root


# Read at import, before the session's cache fixture points LOOKALIKE_CACHE at a temporary directory.
_USER_CACHE = get_settings().cache


@pytest.fixture(scope="session")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real U²-Net-p ONNX file: the copy make install put in the user's cache, else a download into this
    run's cache; the tests that need it skip, saying why, when neither works."""
    from lookalike.errors import ModelError
    from lookalike.focus import weights as focus_weights

    saved = {name: os.environ.pop(name, None) for name in (focus_weights.ENV_PATH, focus_weights.ENV_SHA256)}
    try:
        try:
            return focus_weights.u2netp_path(_USER_CACHE, download=False)
        except ModelError:
            pass
        try:
            return focus_weights.u2netp_path(tmp_path_factory.mktemp("u2netp"))
        except ModelError as exc:
            pytest.skip(f"the U²-Net-p weights are not cached and cannot be downloaded here ({exc})")
    finally:
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value
