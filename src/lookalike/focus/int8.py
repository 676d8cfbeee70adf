"""An 8-bit U²-Net-p: static QDQ quantization with one residual kept in float (optional: ``precision="int8"``).

The recipe, measured on the clothing photos (``bench/bench_focus.py``): ONNX Runtime's static quantization,
QDQ format, uint8 activations, int8 per-channel weights (7-bit on x86 without VNNI, as
:func:`lookalike.embed.quantize.needs_reduced_range` decides), MinMax ranges from 50 photos prepared at the
stage's resolution. The shipped graph is opset 11, so it is converted to opset 13 first (per-channel
dequantization needs the ``axis`` attribute).

Quantizing every layer changes the mask a lot (mask IoU with fp32 at 192x192 on 50 photos: mean 0.83, worst
photo 0.04). Quantizing one stage at a time, all of that comes from one place: the last convolution of the
decoder stage ``stage2d`` (its ``rebnconv1d``), its ReLU and the residual sum that follows, whose activations
reach 25 while 99 % of them are below 3.4, so 8-bit steps wipe out the detail the following upsampling and
side output need. With those three nodes left in float, on 100 photos: mask IoU with fp32 at the same
resolution 0.99 on average (at 160: mean 0.995, worst 0.93; at 192 one photo of 100 drops to 0.50), and
2.2-2.5x faster than fp32 on a 2-core AVX-512 VNNI EPYC, as fast as the fully quantized model. Dynamic
quantization (``ConvInteger``) is 10x slower than fp32 and its masks are useless.

Calibration: 50 photos of the clothing data set when it is on this machine (never downloaded for this),
else 50 synthetic ones; the tag goes into the cached file's name and the descriptor. A cached file is used
whatever its calibration, so the masks do not change under an index when a data set appears later.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lookalike.errors import ModelError

QUANT_VERSION = "1"
CALIBRATION_PHOTOS = 50
FLOAT_CONV = 97
"""Index, in graph order, of the convolution kept in float (``stage2d.rebnconv1d``, of 119)."""
RECIPE = "static QDQ, uint8 activations, int8 per-channel weights, MinMax; stage2d.rebnconv1d + residual float"

Calibration = Callable[[Callable[[Image.Image], np.ndarray]], tuple[str, np.ndarray]]
"""Given the stage's ``prepare``, returns a tag (``"clothing-50"``) and a (n, 3, r, r) float32 batch."""


def float_nodes(model: Any) -> list[str]:
    """Names of the nodes to leave in float: the 98th Conv, its activation and the residual Add after it.

    Counted in the node order of the shipped file or of a torch export (the forward order), not of a graph
    that was re-sorted since."""
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    if len(convs) != 119:
        raise ModelError(f"not a U²-Net-p graph: {len(convs)} convolutions instead of 119")
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    chain = [convs[FLOAT_CONV]]
    for op_types in (("BatchNormalization", "Relu"), ("Relu", "Add"), ("Add",)):
        following = consumers.get(chain[-1].output[0], [])
        if len(following) != 1 or following[0].op_type not in op_types:
            break
        chain.append(following[0])
        if following[0].op_type == "Add":
            break
    if chain[-1].op_type != "Add":
        raise ModelError("not a U²-Net-p graph: stage2d does not end in a convolution, ReLU and residual sum")
    return [node.name for node in chain]


def quantize(fp32: Path, target: Path, calibration: np.ndarray, *, reduce_range: bool = False) -> Path:
    """Write the int8 U²-Net-p for the fp32 ``fp32`` to ``target`` (atomically), calibrated on ``calibration``."""
    try:
        import onnx
        from onnx import version_converter
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise ModelError(f"int8 quantization needs onnx and onnxruntime's quantization tools: {exc}") from exc
    from lookalike.focus.weights import symbolic_model

    if len(calibration) == 0:
        raise ModelError("int8 quantization needs calibration photos, and none were given")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".u2netp-int8-") as work:
        source, pre, out = Path(work) / "opset13.onnx", Path(work) / "pre.onnx", Path(work) / "int8.onnx"
        try:
            model = symbolic_model(fp32)
            if max((op.version for op in model.opset_import if op.domain in ("", "ai.onnx")), default=0) < 13:
                model = version_converter.convert_version(model, 13)
            kept = float_nodes(model)  # in the original node order: quant_pre_process re-sorts the graph
            onnx.save(model, source)
            quant_pre_process(str(source), str(pre))
            prepared = onnx.load(str(pre))
            if not set(kept) <= {node.name for node in prepared.graph.node}:
                raise ModelError(f"the nodes to keep in float ({kept}) were renamed by the pre-processing")
            name = prepared.graph.input[0].name
            chunks = iter([{name: calibration[i : i + 5]} for i in range(0, len(calibration), 5)])

            class Reader:
                def get_next(self) -> dict[str, np.ndarray] | None:
                    return next(chunks, None)

            quantize_static(
                str(pre),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=kept,
            )
            out.replace(target)
        except ModelError:
            raise
        except Exception as exc:  # the quantization tools raise all sorts
            raise ModelError(f"cannot quantize {fp32}: {type(exc).__name__}: {exc}") from exc
    return target


def cached_int8(
    fp32: Path,
    digest: str,
    resolution: int,
    prepare: Callable[[Image.Image], np.ndarray],
    calibration: Calibration,
    cache_dir: Path | None = None,
) -> Path:
    """The cached int8 file for fp32 weights ``digest`` at ``resolution``, quantized first if there is none.

    It is kept in ``<cache_dir>/models``; without ``cache_dir``, beside ``fp32`` when that is in a models
    folder, else in the configured cache."""
    from lookalike.embed.quantize import needs_reduced_range

    reduced = needs_reduced_range()
    if cache_dir is not None:
        models = cache_dir / "models"
    else:
        models = fp32.parent if fp32.parent.name == "models" else _models_dir()
    prefix = f"u2netp-{digest[:16]}-int8-q{QUANT_VERSION}{'r' if reduced else ''}-{resolution}-"
    existing = sorted(models.glob(f"{prefix}*.onnx"))
    if existing:
        return existing[0]
    tag, batch = calibration(prepare)
    return quantize(fp32, models / f"{prefix}{tag}.onnx", batch, reduce_range=reduced)


def calibration_tag(path: Path) -> str:
    """``clothing-50`` or ``synthetic-50`` from a cached int8 file's name."""
    return "-".join(path.stem.split("-")[-2:])


def default_calibration(
    prepare: Callable[[Image.Image], np.ndarray], count: int = CALIBRATION_PHOTOS
) -> tuple[str, np.ndarray]:
    """``count`` clothing photos (a fixed random sample) when the data set is here, else synthetic ones."""
    photos = _clothing_sample(count)
    if len(photos) >= count // 2:
        return f"clothing-{len(photos)}", np.stack([prepare(photo) for photo in photos])
    from lookalike.embed.quantize import synthetic_batches

    synthetic = [Image.fromarray(pixels) for batch in synthetic_batches(count, size=320) for pixels in batch]
    return f"synthetic-{count}", np.stack([prepare(photo) for photo in synthetic])


def _clothing_sample(count: int) -> Sequence[Image.Image]:
    from lookalike.errors import LookalikeError
    from lookalike.images import load_image
    from lookalike.sources.datasets import ClothingSource, find_clothing_dataset

    try:
        root = find_clothing_dataset()
        if root is None:
            return []
        items = sorted(ClothingSource(root), key=lambda item: item.id)
    except LookalikeError:
        return []
    photos = []
    for item in random.Random(0).sample(items, min(count, len(items))):
        try:
            photos.append(load_image(item.read(), min_side=320))
        except Exception:  # an unreadable photo is just left out of the sample
            continue
    return photos


def _models_dir() -> Path:
    from lookalike.config import get_settings

    return get_settings().cache / "models"
