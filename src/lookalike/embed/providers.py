"""Which ONNX Runtime execution providers run the graphs: a setting, so a GPU machine runs the same files.

``LOOKALIKE_PROVIDERS`` (or the ``providers`` argument) lists them in order of preference by short name
(``cuda``, ``tensorrt``, ``openvino``, ``coreml``, ``directml``, ``cpu``) or by ONNX Runtime's own name
(``CUDAExecutionProvider``). The CPU provider always comes last as the fallback. A provider this build of
ONNX Runtime does not have (``onnxruntime`` is the CPU build; CUDA needs ``onnxruntime-gpu``) is left out
with one clear warning naming what is available and what to install, rather than failing a search: the
vectors are the same on every provider, within float tolerance, so an index stays valid.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from lookalike.errors import ModelError

log = logging.getLogger(__name__)

SHORT_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "rocm": "ROCMExecutionProvider",
}
CPU = SHORT_NAMES["cpu"]
_PACKAGES = {
    "CUDAExecutionProvider": "onnxruntime-gpu",
    "TensorrtExecutionProvider": "onnxruntime-gpu (with TensorRT)",
    "OpenVINOExecutionProvider": "onnxruntime-openvino",
    "DmlExecutionProvider": "onnxruntime-directml",
    "ROCMExecutionProvider": "onnxruntime-rocm",
}
_warned: set[tuple[str, ...]] = set()


def full_name(name: str) -> str:
    """``cuda`` -> ``CUDAExecutionProvider``; an ONNX Runtime name is kept; anything else is a ModelError."""
    text = name.strip()
    if text.lower() in SHORT_NAMES:
        return SHORT_NAMES[text.lower()]
    if text in SHORT_NAMES.values():
        return text
    known = ", ".join(SHORT_NAMES)
    raise ModelError(f"unknown ONNX Runtime execution provider {name!r}; choose from {known}")


def resolve(wanted: Iterable[str] | None, available: Sequence[str] | None = None) -> list[str]:
    """The providers to give a session: the wanted ones this build has, in order, then the CPU fallback.

    Unavailable ones are dropped with one warning per distinct request (not one per model loaded).
    """
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    names = [full_name(name) for name in (wanted or ())]
    chosen = [name for name in dict.fromkeys(names) if name in available and name != CPU]
    missing = tuple(name for name in dict.fromkeys(names) if name not in available)
    if missing and missing not in _warned:
        _warned.add(missing)
        hints = "; ".join(f"{name} needs {_PACKAGES[name]}" for name in missing if name in _PACKAGES)
        log.warning(
            "ONNX Runtime here has no %s (available: %s)%s; running on %s",
            ", ".join(missing),
            ", ".join(available),
            f" ({hints})" if hints else "",
            ", ".join([*chosen, CPU]),
        )
    return [*chosen, CPU]
