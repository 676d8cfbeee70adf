"""What a figure was measured on: the machine, and the index's recorded settings."""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lookalike.index import VectorIndex


def cpu_flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def machine_info() -> dict[str, Any]:
    """CPU model, cores (usable by this process, and in the machine), AVX-512 and VNNI, library versions."""
    cpuinfo = ""
    with contextlib.suppress(OSError):
        cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    flags = cpu_flags(cpuinfo)
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    info: dict[str, Any] = {
        "cpu": model,
        "cores": usable,
        "cores_in_machine": os.cpu_count(),
        "avx512": "avx512f" in flags,
        "avx512_vnni": "avx512_vnni" in flags,
        "python": platform.python_version(),
    }
    for module in ("faiss", "onnxruntime", "numpy"):
        try:
            info[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            info[module] = None
    return info


def index_settings(index: VectorIndex) -> dict[str, Any]:
    """Everything the index records about itself: the model descriptor, metric, kind, structure."""
    settings = asdict(index.settings)
    settings["embedding"] = dict(index.settings.embedding)
    if isinstance(settings["embedding"].get("adaptation"), dict):  # the basis is data, not a setting to show
        adaptation = dict(settings["embedding"]["adaptation"])
        adaptation.pop("basis", None)
        settings["embedding"]["adaptation"] = adaptation
    return settings
