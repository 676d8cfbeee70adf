"""8-bit models: static int8 quantization of an exported ONNX image model, with ONNX Runtime's tools.

The recipe (measured on EfficientNet-Lite0 and the clothing catalogue, see ``bench/bench_quantize.py``):

* ``quant_pre_process`` first (shape inference, constant folding; the TF-style ``Pad`` ops fold into the convs);
* **static** quantization, QDQ format, uint8 activations and int8 weights quantized **per channel** (U8S8:
  the x86 layout MLAS runs fastest), MinMax ranges from ~200 calibration images. Per-tensor weights lose too
  much on the depthwise convolutions (mean cosine to fp32 0.87 instead of 0.99). On x86 CPUs without VNNI
  the weights are 7-bit (``reduce_range``, see :func:`needs_reduced_range`): MLAS multiplies U8S8 there with
  ``vpmaddubsw``, which adds pairs of products into saturating int16, and full-range weights then lose a lot
  (measured on an AVX2-only EPYC: cosine to fp32 0.79 / 0.96 / 0.86 on three photos, 0.98 / 0.99 / 0.96
  with 7-bit weights); with VNNI (or on ARM) the full 8 bits are kept. Dynamic quantization is no use here:
  it turns every convolution into ``ConvInteger``, which ORT runs ~13x slower than the fp32 model, and it
  quantizes activations per tensor on the fly;
* the classifier ``Gemm`` stays float (logits are only used to check the weights), and so does the final
  ``ReduceMean``: ``features`` is the float mean of the dequantized last activation;
* ReLU6 (``Clip``) disappears into the quantized ranges, which is exact for asymmetric uint8 activations;
* the input normalisation ``(x - 127) / 128`` followed by a uint8 quantization with scale 1/128 and zero
  point 127 is the identity on uint8 pixels, so the quantizer is told to use exactly those parameters and
  the Cast/Sub/Div/QuantizeLinear chain is then cut out: the uint8 image feeds the first quantized conv
  directly (bit-identical output, ~25 % faster: the float normalisation in NHWC was a fifth of the time).

Calibration images come from the caller as uint8 NHWC batches: this module knows no data set.
:func:`synthetic_batches` makes stand-ins when there is nothing better.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import ModelError

QUANT_VERSION = "1"
"""Bump when the recipe changes, so stale cached int8 files are not reused."""

RECIPE = "static QDQ, uint8 activations, int8 per-channel weights, MinMax"
RECIPE_REDUCED = "static QDQ, uint8 activations, 7-bit per-channel weights (reduce_range), MinMax"
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def needs_reduced_range(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether int8 weights must be 7-bit here: on x86 without a VNNI instruction (see the module notes).

    Anything but Linux on x86 keeps full 8-bit weights (ARM's int8 dot products do not saturate)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    try:
        text = cpuinfo.read_text()
    except OSError:
        return True  # an x86 CPU we cannot inspect: the safe choice costs a little accuracy, never a lot
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return not any(flag in flags for flag in VNNI_FLAGS)


CALIBRATION_IMAGES = 200


def quantize_int8(
    fp32_path: Path,
    target: Path,
    calibration: Iterable[np.ndarray],
    *,
    limit: int = CALIBRATION_IMAGES,
    exclude_op_types: Sequence[str] = ("Gemm",),
    per_channel: bool = True,
    reduce_range: bool = False,
) -> Path:
    """Write a statically quantized int8 copy of the uint8-NHWC-input model ``fp32_path`` to ``target``.

    ``calibration`` yields (n, h, w, 3) uint8 batches, prepared exactly as the model will see them; at most
    ``limit`` images are used. The file is written under a temporary name and renamed into place.
    """
    try:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise ModelError(f"int8 quantization needs onnx and onnxruntime's quantization tools: {exc}") from exc

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".quantize-") as work:
        pre = Path(work) / "pre.onnx"
        raw = Path(work) / "int8-raw.onnx"
        try:
            quant_pre_process(str(fp32_path), str(pre))
            model = onnx.load(str(pre))
            input_name = model.graph.input[0].name
            reader = _Reader(input_name, calibration, limit)
            overrides = _input_overrides(model)
            quantize_static(
                str(pre),
                str(raw),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=[node.name for node in model.graph.node if node.op_type in exclude_op_types],
                # Not CalibMaxIntermediateOutputs: up to at least ORT 1.32 it drops the ranges of every full group
                # of batches instead of merging them (microsoft/onnxruntime#18893). MinMax keeps only a min and a
                # max per tensor and batch anyway.
                extra_options={"TensorQuantOverrides": overrides},
            )
        except ModelError:
            raise
        except Exception as exc:  # the quantization tools raise all sorts
            raise ModelError(f"cannot quantize {fp32_path}: {type(exc).__name__}: {exc}") from exc
        if reader.images == 0:
            raise ModelError("int8 quantization needs calibration images, and none were given")
        quantized = onnx.load(str(raw))
        fold_input_quantization(quantized)
        handle, tmp_name = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
        os.close(handle)
        try:
            onnx.save(quantized, tmp_name)
            os.replace(tmp_name, target)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
    return target


class _Reader:
    """A CalibrationDataReader (ONNX Runtime accepts anything with ``get_next``) over the caller's batches.

    Batches are cut into chunks of at most ``chunk`` images: the calibration session's memory grows with the
    batch (~100 MB an image for EfficientNet-Lite0), so this bounds it whatever the caller's batch size.
    """

    def __init__(self, input_name: str, batches: Iterable[np.ndarray], limit: int, chunk: int = 8) -> None:
        self.input_name = input_name
        self.images = 0
        self._chunks = self._cut(batches, chunk)
        self._limit = limit

    @staticmethod
    def _cut(batches: Iterable[np.ndarray], chunk: int) -> Iterator[np.ndarray]:
        for batch in batches:
            if batch.ndim != 4 or batch.dtype != np.uint8 or batch.shape[-1] != 3:
                raise ModelError(f"calibration batches must be (n, h, w, 3) uint8, got {batch.dtype} {batch.shape}")
            for start in range(0, len(batch), chunk):
                yield batch[start : start + chunk]

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.images >= self._limit:
            return None
        batch = next(self._chunks, None)
        if batch is None:
            return None
        batch = np.ascontiguousarray(batch[: self._limit - self.images])
        self.images += len(batch)
        return {self.input_name: batch}


def _normalisation(model: Any) -> tuple[Any, Any, Any, float, float] | None:
    """The graph's input normalisation ``Div(Sub(Cast(x), mean), std)``: (cast, sub, div, mean, std), or None.

    Only a single mean and std for all channels, with the mean an integer and ``1 / std`` exact in float32
    (a power of two), make ``(x - mean) / std`` quantize back to ``x`` exactly.
    """
    from onnx import numpy_helper

    graph = model.graph
    producer = {output: node for node in graph.node for output in node.output}
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    for div in graph.node:
        sub = producer.get(div.input[0]) if div.op_type == "Div" else None
        cast = producer.get(sub.input[0]) if sub is not None and sub.op_type == "Sub" else None
        if sub is None or cast is None or cast.op_type != "Cast":
            continue
        mean, std = constants.get(sub.input[1]), constants.get(div.input[1])
        if mean is None or std is None or np.ptp(mean) != 0 or np.ptp(std) != 0:
            return None
        m, s = float(mean.flat[0]), float(std.flat[0])
        if m != round(m) or not 0 <= m <= 255 or s <= 0 or float(np.float32(1 / s)) * s != 1.0:
            return None
        return cast, sub, div, m, s
    return None


def _input_overrides(model: Any) -> dict[str, list[dict[str, Any]]]:
    """Pin the quantization of the normalised input so that it is the identity on uint8 pixels."""
    found = _normalisation(model)
    if found is None:
        return {}
    _, _, div, mean, std = found
    return {
        div.output[0]: [{"scale": np.array(1 / std, dtype=np.float32), "zero_point": np.array(mean, dtype=np.uint8)}]
    }


def fold_input_quantization(model: Any) -> bool:
    """Cut ``Cast -> Sub -> Div -> QuantizeLinear`` where it maps every uint8 pixel to itself.

    The consumers of the QuantizeLinear then read the uint8 tensor that fed the Cast. Returns whether the
    graph changed; it is left alone unless the identity is exact.
    """
    from onnx import numpy_helper

    found = _normalisation(model)
    if found is None:
        return False
    cast, _, div, mean, std = found
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    quantize = [node for node in graph.node if node.op_type == "QuantizeLinear" and node.input[0] == div.output[0]]
    if len(quantize) != 1 or len(quantize[0].input) < 3:
        return False
    (q,) = quantize
    if q.input[1] not in initializers or q.input[2] not in initializers:
        return False
    scale = numpy_helper.to_array(initializers[q.input[1]])
    zero_point = numpy_helper.to_array(initializers[q.input[2]])
    if scale.size != 1 or zero_point.dtype != np.uint8 or float(zero_point) != mean or float(scale) * std != 1.0:
        return False
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name == q.output[0]:
                node.input[position] = cast.input[0]
    _remove_dead_nodes(model)
    return True


def _remove_dead_nodes(model: Any) -> None:
    graph = model.graph
    while True:
        used = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
        dead = [node for node in graph.node if not any(output in used for output in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for tensor in [tensor for tensor in graph.initializer if tensor.name not in used]:
        graph.initializer.remove(tensor)


def synthetic_batches(count: int = CALIBRATION_IMAGES, batch: int = 20, size: int = 224, seed: int = 0):
    """``count`` synthetic 'product photos' in uint8 NHWC batches, for calibrating when no real images exist.

    Each is a smooth colour field or a light studio background with one to three solid, striped or noisy
    shapes, some sensor noise, and the full 0..255 range somewhere, so activation ranges are roughly those of
    photos. Real images of the kind to be indexed calibrate better (see ``bench/bench_quantize.py``).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    made = 0
    while made < count:
        n = min(batch, count - made)
        out = np.empty((n, size, size, 3), dtype=np.uint8)
        for i in range(n):
            out[i] = _synthetic_image(rng, xx, yy)
        made += n
        yield out


def _synthetic_image(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    size = xx.shape[0]
    if rng.random() < 0.5:
        image = np.empty((size, size, 3), dtype=np.float32)
        image[:] = rng.uniform(200, 250)  # a light studio background
    else:
        low = rng.uniform(0, 255, (4, 4, 3)).astype(np.float32)  # a smooth colour field
        rows = np.clip((yy * 3).astype(int), 0, 2)
        cols = np.clip((xx * 3).astype(int), 0, 2)
        fy, fx = (yy * 3 - rows)[..., None], (xx * 3 - cols)[..., None]
        image = (
            low[rows, cols] * (1 - fy) * (1 - fx)
            + low[rows + 1, cols] * fy * (1 - fx)
            + low[rows, cols + 1] * (1 - fy) * fx
            + low[rows + 1, cols + 1] * fy * fx
        )
    for _ in range(rng.integers(1, 4)):
        colour = rng.uniform(0, 255, 3)
        cy, cx = rng.uniform(0.2, 0.8, 2)
        hy, hx = rng.uniform(0.08, 0.35, 2)
        if rng.random() < 0.5:
            mask = (np.abs(yy - cy) < hy) & (np.abs(xx - cx) < hx)
        else:
            mask = ((yy - cy) / hy) ** 2 + ((xx - cx) / hx) ** 2 < 1
        texture = rng.random()
        if texture < 0.35:  # stripes
            period = rng.uniform(0.02, 0.1)
            stripes = (np.sin((xx * rng.uniform(-1, 1) + yy) / period) > 0)[..., None]
            fill = np.where(stripes, colour, 255 - colour)
        elif texture < 0.6:  # knit-like noise
            fill = colour + rng.normal(0, 40, (size, size, 3))
        else:
            fill = np.broadcast_to(colour, (size, size, 3))
        image = np.where(mask[..., None], fill, image)
    image += rng.normal(0, rng.uniform(1, 6), image.shape)
    image[rng.integers(size), :, :] = 0  # the full range occurs, as in real photos
    image[:, rng.integers(size), :] = 255
    return np.clip(image, 0, 255).astype(np.uint8)
