"""The int8 EfficientNet-Lites: build from the packaged weights, stay close to fp32, are cached, and are models of
their own as far as an index is concerned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import make_photo
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from skimage import data

from lookalike.catalog import check_model
from lookalike.embed import MODELS, efficientnet_int8, load_embedder
from lookalike.embed.efficientnet import VARIANTS
from lookalike.embed.quantize import _Reader, fold_input_quantization, synthetic_batches
from lookalike.errors import ModelError, ModelMismatchError
from lookalike.images import load_image, resize_and_crop

ESPRESSO = 967
CALIBRATION = "synthetic-32"


@pytest.fixture(scope="module")
def int8(lite0, cache_dir: Path):
    """Built once, calibrated on a few synthetic images to keep it fast (the registry would use 200)."""
    return efficientnet_int8.load(cache_dir, calibration=lambda: (CALIBRATION, synthetic_batches(32, batch=16)))


def photos() -> list[Image.Image]:
    return [Image.fromarray(data.coffee()), Image.fromarray(data.chelsea()), Image.fromarray(data.astronaut())]


def test_int8_builds_next_to_fp32_and_the_registry_reuses_the_cached_file(int8, lite0, cache_dir: Path) -> None:
    assert int8.onnx_path.parent == lite0.onnx_path.parent
    assert int8.onnx_path.name == f"{lite0.onnx_path.stem}{efficientnet_int8._marker()}{CALIBRATION}.onnx"
    assert int8.onnx_path.stat().st_size < lite0.onnx_path.stat().st_size / 2  # 8-bit weights
    built = int8.onnx_path.stat().st_mtime_ns
    assert "efficientnet-lite0-int8" in MODELS

    again = load_embedder("efficientnet-lite0-int8", cache_dir=cache_dir)

    assert again.onnx_path == int8.onnx_path
    assert again.onnx_path.stat().st_mtime_ns == built  # not rebuilt
    assert again.descriptor() == int8.descriptor()
    assert not list(int8.onnx_path.parent.glob("*.tmp")) and not list(int8.onnx_path.parent.glob(".quantize-*"))


def test_int8_graph_is_quantized_and_reads_the_pixels_directly(int8) -> None:
    ops = [node.op_type for node in onnx.load(str(int8.onnx_path)).graph.node]
    assert ops.count("Conv") == 49 and ops.count("DequantizeLinear") > 49  # every conv in QDQ form
    assert not {"Cast", "Sub", "Div"} & set(ops)  # the input normalisation was folded away
    assert ops.count("Gemm") == 1  # the classifier stays float


def test_int8_features_are_close_to_fp32(int8, lite0) -> None:
    quantized, reference = int8.embed(photos()), lite0.embed(photos())
    assert quantized.shape == (3, 1280) and quantized.dtype == np.float32
    cosines = (quantized * reference).sum(1) / np.linalg.norm(quantized, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosines.mean() >= 0.95, cosines
    # Still a meaningful space: each photo is nearer its own fp32 vector than the other photos' vectors.
    assert (np.argmax(quantized @ reference.T, axis=1) == np.arange(3)).all()


def test_reduced_range_follows_the_cpu_flags(tmp_path: Path, monkeypatch) -> None:
    from lookalike.embed import quantize

    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    assert quantize.needs_reduced_range(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni\n")
    assert not quantize.needs_reduced_range(cpuinfo)
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert not quantize.needs_reduced_range(cpuinfo)


def test_int8_still_recognises_the_coffee(int8) -> None:
    logits = int8.classify(int8.prepare(Image.fromarray(data.coffee()))[None])[0]
    assert int(np.argmax(logits)) == ESPRESSO


def test_int8_descriptor_differs_so_an_index_refuses_the_other_model(int8, lite0) -> None:
    quantized, reference = int8.descriptor(), lite0.descriptor()
    assert quantized["model"] == "efficientnet-lite0-int8" != reference["model"]
    assert quantized["weights"] != reference["weights"] and len(quantized["weights"]) == 16
    assert quantized["fp32_weights"] == reference["weights"]
    assert quantized["calibration"] == CALIBRATION
    assert quantized["dim"] == reference["dim"] and quantized["preprocessing"] == reference["preprocessing"]
    with pytest.raises(ModelMismatchError):
        check_model(reference, int8)
    with pytest.raises(ModelMismatchError):
        check_model(quantized, lite0)


BIGGER = ["efficientnet-lite1", "efficientnet-lite2"]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module", params=BIGGER)
def bigger_int8(request, cache_dir: Path):
    """(int8, fp32) embedders of Lite1 and Lite2, the int8 one calibrated on a few synthetic images of its crop."""
    name = request.param
    crop = VARIANTS[name].preprocessing.crop
    fp32 = load_embedder(name, cache_dir=cache_dir)
    calibration = lambda: (CALIBRATION, synthetic_batches(32, batch=16, size=crop))  # noqa: E731
    return efficientnet_int8.load(cache_dir, calibration=calibration, name=f"{name}-int8"), fp32


def test_bigger_int8_is_made_from_its_own_variant_and_the_registry_reuses_it(bigger_int8, cache_dir: Path) -> None:
    int8, fp32 = bigger_int8
    assert int8.name == f"{fp32.name}-int8" and int8.name in MODELS
    assert int8.onnx_path.name == f"{fp32.onnx_path.stem}{efficientnet_int8._marker()}{CALIBRATION}.onnx"
    assert int8.onnx_path.stat().st_size < fp32.onnx_path.stat().st_size / 2
    quantized, reference = int8.descriptor(), fp32.descriptor()
    assert quantized["fp32_weights"] == reference["weights"] != quantized["weights"]
    assert quantized["dim"] == reference["dim"] == 1280
    assert quantized["preprocessing"] == reference["preprocessing"]
    assert quantized["preprocessing"]["crop"] == VARIANTS[fp32.name].preprocessing.crop != 224
    with pytest.raises(ModelMismatchError):
        check_model(reference, int8)
    built = int8.onnx_path.stat().st_mtime_ns
    again = load_embedder(int8.name, cache_dir=cache_dir)
    assert again.onnx_path == int8.onnx_path and again.onnx_path.stat().st_mtime_ns == built
    assert again.descriptor() == quantized


def test_bigger_int8_graph_is_quantized_and_reads_the_pixels_directly(bigger_int8) -> None:
    int8, fp32 = bigger_int8
    ops = [node.op_type for node in onnx.load(str(int8.onnx_path)).graph.node]
    convs = [node.op_type for node in onnx.load(str(fp32.onnx_path)).graph.node].count("Conv")
    assert convs == 64  # Lite1 and Lite2: 21 blocks (Lite0: 16 blocks, 49 convs)
    assert ops.count("Conv") == convs and ops.count("DequantizeLinear") > convs
    assert not {"Cast", "Sub", "Div"} & set(ops)
    assert ops.count("Gemm") == 1


def test_bigger_int8_features_are_close_to_fp32_and_still_see_the_coffee(bigger_int8) -> None:
    int8, fp32 = bigger_int8
    quantized, reference = int8.embed(photos()), fp32.embed(photos())
    assert quantized.shape == (3, 1280) and quantized.dtype == np.float32
    cosines = _cosines(quantized, reference)
    assert cosines.mean() >= 0.95, cosines
    assert (np.argmax(quantized @ reference.T, axis=1) == np.arange(3)).all()
    logits = int8.classify(int8.prepare(Image.fromarray(data.coffee()))[None])[0]
    assert int(np.argmax(logits)) == ESPRESSO


@pytest.mark.parametrize("name", ["efficientnet-lite0", *BIGGER])
def test_default_calibration_prepares_images_as_the_variant_does(name, tmp_path: Path, monkeypatch) -> None:
    from lookalike.sources import datasets

    preprocessing = VARIANTS[name].preprocessing
    crop = preprocessing.crop
    monkeypatch.setattr(datasets, "find_clothing_dataset", lambda *args, **kwargs: None)
    tag, batches = efficientnet_int8.default_calibration(preprocessing, count=6, batch=4)
    assert tag == "synthetic-6"
    assert [batch.shape for batch in batches] == [(4, crop, crop, 3), (2, crop, crop, 3)]

    root = tmp_path / "clothing-dataset"
    (root / "images").mkdir(parents=True)
    rows = ["image,sender_id,label,kids"]
    for seed in range(6):
        (root / "images" / f"item-{seed}.jpg").write_bytes(make_photo(seed, size=(300 + 40 * seed, 420)))
        rows.append(f"item-{seed},1,Shirt,False")
    (root / "images.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(datasets, "find_clothing_dataset", lambda *args, **kwargs: root)
    tag, batches = efficientnet_int8.default_calibration(preprocessing, count=6, batch=4)
    batches = list(batches)
    assert tag == "clothing-6"
    assert [batch.shape for batch in batches] == [(4, crop, crop, 3), (2, crop, crop, 3)]
    # The variant's own resize and crop of each photo (a 224 crop, or Lite0's 256 resize, would differ).
    photos_bytes = [(root / "images" / f"item-{seed}.jpg").read_bytes() for seed in range(6)]
    expected = {
        resize_and_crop(load_image(raw, min_side=preprocessing.resize), preprocessing.resize, crop).tobytes()
        for raw in photos_bytes
    }
    assert {image.tobytes() for batch in batches for image in batch} == expected


def _normalise_then_quantize(mean, std, scale: float, zero_point: int) -> onnx.ModelProto:
    """uint8 NHWC -> Cast -> (x - mean) / std -> QuantizeLinear -> DequantizeLinear: the exported model's start."""
    nodes = [
        helper.make_node("Cast", ["image"], ["cast"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["cast", "mean"], ["sub"]),
        helper.make_node("Div", ["sub", "std"], ["div"]),
        helper.make_node("QuantizeLinear", ["div", "scale", "zero_point"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "scale", "zero_point"], ["out"]),
    ]
    initializers = [
        numpy_helper.from_array(np.broadcast_to(np.asarray(mean, dtype=np.float32), 3).copy(), "mean"),
        numpy_helper.from_array(np.broadcast_to(np.asarray(std, dtype=np.float32), 3).copy(), "std"),
        numpy_helper.from_array(np.array(scale, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.array(zero_point, dtype=np.uint8), "zero_point"),
    ]
    graph = helper.make_graph(
        nodes,
        "start",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 16, 16, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 16, 16, 3])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, pixels: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": pixels})[0]


def test_folding_the_input_quantization_is_exact_for_every_pixel_value() -> None:
    pixels = np.arange(768, dtype=np.int64).reshape(1, 16, 16, 3).astype(np.uint8)  # every value 0..255
    model = _normalise_then_quantize(127.0, 128.0, 1 / 128, 127)
    before = _run(model, pixels)

    assert fold_input_quantization(model)

    assert [node.op_type for node in model.graph.node] == ["DequantizeLinear"]
    assert {tensor.name for tensor in model.graph.initializer} == {"scale", "zero_point"}
    np.testing.assert_array_equal(_run(model, pixels), before)


@pytest.mark.parametrize(
    ("mean", "std", "scale", "zero_point"),
    [
        ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375), 1 / 58.0, 124),
        (127.0, 100.0, 1 / 100, 127),
        (127.0, 128.0, 1 / 64, 127),
        (127.0, 128.0, 1 / 128, 128),
    ],
    ids=["per-channel", "std-not-a-power-of-two", "other-scale", "other-zero-point"],
)
def test_input_quantization_is_left_alone_unless_it_is_the_identity(mean, std, scale, zero_point) -> None:
    model = _normalise_then_quantize(mean, std, scale, zero_point)
    assert not fold_input_quantization(model)
    assert len(model.graph.node) == 5


def test_calibration_reader_caps_images_cuts_batches_and_checks_them() -> None:
    batches = [np.zeros((20, 8, 8, 3), dtype=np.uint8) for _ in range(3)]
    reader = _Reader("image", batches, limit=30, chunk=8)
    sizes = []
    while (item := reader.get_next()) is not None:
        sizes.append(len(item["image"]))
    assert sizes == [8, 8, 4, 8, 2] and reader.images == 30
    with pytest.raises(ModelError, match="uint8"):
        _Reader("image", [np.zeros((2, 8, 8, 3), dtype=np.float32)], limit=10).get_next()


def test_synthetic_calibration_images_are_uint8_nhwc_and_varied() -> None:
    batches = list(synthetic_batches(10, batch=4, size=64))
    assert [b.shape for b in batches] == [(4, 64, 64, 3), (4, 64, 64, 3), (2, 64, 64, 3)]
    images = np.concatenate(batches)
    assert images.dtype == np.uint8 and images.min() == 0 and images.max() == 255
    assert len({image.tobytes() for image in images}) == 10
    np.testing.assert_array_equal(np.concatenate(list(synthetic_batches(10, batch=4, size=64))), images)
