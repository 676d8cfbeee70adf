"""Execution providers are a setting: the same ONNX graphs on a GPU machine, the CPU as the stated fallback."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from lookalike.embed import providers
from lookalike.errors import ModelError

CPU = "CPUExecutionProvider"


@pytest.fixture(autouse=True)
def fresh_warnings() -> None:
    providers._warned.clear()


def test_short_and_full_names() -> None:
    assert providers.full_name("cuda") == "CUDAExecutionProvider"
    assert providers.full_name(" OpenVINO ") == "OpenVINOExecutionProvider"
    assert providers.full_name("TensorrtExecutionProvider") == "TensorrtExecutionProvider"
    with pytest.raises(ModelError, match=r"unknown ONNX Runtime execution provider 'gpu'.*cuda"):
        providers.full_name("gpu")


def test_available_providers_are_kept_in_order_and_the_cpu_comes_last() -> None:
    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", CPU]
    assert providers.resolve(["cuda", "tensorrt"], available) == [
        "CUDAExecutionProvider",
        "TensorrtExecutionProvider",
        CPU,
    ]
    assert providers.resolve(["cpu", "cuda"], available) == ["CUDAExecutionProvider", CPU]
    assert providers.resolve(None, available) == [CPU]


def test_a_missing_provider_falls_back_to_the_cpu_with_one_clear_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lookalike.embed.providers"):
        for _ in range(3):
            assert providers.resolve(["cuda"], [CPU]) == [CPU]
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert "no CUDAExecutionProvider" in warnings[0] and "onnxruntime-gpu" in warnings[0]
    assert warnings[0].endswith(f"running on {CPU}")


def test_the_embedder_runs_on_the_resolved_providers(lite0, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for CUDA on this CPU-only build gives a working CPU session with the same vectors."""
    from lookalike.embed.base import Embedder

    cuda = Embedder(lite0.name, lite0.onnx_path, lite0.dim, lite0.preprocessing, providers=("cuda", "cpu"))
    assert cuda._session.get_providers() == [CPU]
    batch = np.random.default_rng(0).integers(0, 255, (2, 224, 224, 3), dtype=np.uint8)
    assert np.allclose(cuda.embed_prepared(batch), lite0.embed_prepared(batch), atol=1e-5)
    monkeypatch.setenv("LOOKALIKE_PROVIDERS", '["openvino"]')
    from_setting = Embedder(lite0.name, lite0.onnx_path, lite0.dim, lite0.preprocessing)
    assert from_setting.providers == ("openvino",) and from_setting._session.get_providers() == [CPU]
