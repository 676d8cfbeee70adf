"""Shared fixtures: a per-run model cache, the real default model, small generated catalogues, a decode spy; and
which tests are ``slow`` (``make test-fast`` leaves them out; ``make test`` runs everything)."""

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


# ----------------------------------------------------------------------------------------- slow tests
# Tests over ~3 s on a quiet 2-core machine, browser tests, soak- and fuzz-like tests and the Milvus server's:
# marked here, in one list, rather than in each file, so the fast loop's choice is reviewed in one place. A file
# path marks every test in it; ``path::name`` one test (all its parameters); ``path::name[id]`` one case. Milvus
# tests of the contract suite are marked by their ``[milvus]`` parameter (tests/contract/conftest.py).
SLOW = (
    "tests/test_web_shop.py",  # a real browser (Playwright) against a live server
    "tests/test_attacks.py",  # hostile load on a real server
    "tests/test_index_milvus.py",  # a real Milvus server
    "tests/test_concurrency.py::test_a_server_keeps_answering_while_other_processes_ingest_and_delete",  # soak
    "tests/test_crash.py",  # repeated SIGKILLs of real ingest processes
    "tests/test_cli.py::test_index_search_info_delete_eval",
    "tests/test_cli.py::test_search_errors_name_the_problem",
    "tests/test_cli.py::test_quantized_structure_options_reach_the_index",
    "tests/test_cli.py::test_the_progress_bar_and_the_summary_agree_with_the_files_listed",
    "tests/test_cli.py::test_models_lists_the_registry",
    "tests/test_adapt.py::test_cli_adapt_and_undo",
    "tests/test_adapt.py::test_undo_restores_the_plain_vectors_and_relearning_starts_from_them",
    "tests/test_confidence.py::test_calibration_is_kept_with_the_index_and_shapes_every_answer",
    "tests/test_confidence.py::test_the_api_answers_with_tiers_folds_copies_and_lists_duplicates",
    "tests/test_api_shop.py::test_a_focused_index_answers_where_it_found_the_product",
    "tests/test_adapt.py::test_the_projection_helps_items_that_have_no_label",
    "tests/test_adapt.py::test_class_directions_span_the_class_means_and_need_two_classes",
    "tests/test_adapt.py::test_adapt_reprojects_every_vector_and_queries_follow",
    "tests/test_focus.py::test_a_u2net_project_state_dict_loads_and_exports",  # a torch export
    "tests/test_focus.py::test_int8_is_built_once_and_agrees_with_fp32",
    "tests/test_focus.py::test_symbolic_dimensions_change_nothing_at_320",
    "tests/test_embed.py::test_a_cached_export_embeds_and_searches_with_no_torch_at_all",  # a fresh process
    "tests/test_embed.py::test_resnet50_loads_torchvision_format_weights_from_a_file",
    "tests/test_hostile.py::test_cli_as_a_real_process",
    "tests/test_filter_cost.py::test_random_filters_agree_with_matches",  # fuzz-like
    "tests/test_filter_cost.py::test_the_largest_filter_allowed_answers_exactly",
    "tests/test_filters.py::test_sql_agrees_with_matches_on_large_mixed_lists",  # fuzz-like
    "tests/test_evaluate.py::test_duplicate_recall_matches_a_reference_through_the_query_path",
    "tests/test_datasets.py::test_indexing_the_sample",
    "tests/test_index_embedded.py::test_compacting_saves_free_the_previous_structure",  # 9 rounds of 512-d churn
    "tests/test_snapshot.py::test_snapshots_taken_during_an_ingest_are_committed_states_with_the_same_answers",
    "tests/test_ingest.py::test_ingest_killed_mid_run_resumes_without_loss_or_duplicates",  # kills a process
    "tests/test_quantize.py::test_bigger_int8_is_made_from_its_own_variant_and_the_registry_reuses_it",
    "tests/test_quantize.py::test_int8_builds_next_to_fp32_and_the_registry_reuses_the_cached_file",
    "tests/test_index_quantized.py::test_setting_lifecycle[ivf-pq]",
    "tests/test_index_quantized.py::test_setting_lifecycle[ivf-pq-fp16-store]",
)


def _is_slow(nodeid: str) -> bool:
    path, _, rest = nodeid.partition("::")
    test = f"{path}::{rest.split('[', 1)[0].split('::', 1)[0]}"
    return path in SLOW or test in SLOW or nodeid in SLOW


def _is_milvus(nodeid: str) -> bool:
    """A test that talks to (or is about) the Milvus backend: its file, name or parameter says "milvus"."""
    return "milvus" in nodeid.lower()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _is_slow(item.nodeid):
            item.add_marker(pytest.mark.slow)
        if _is_milvus(item.nodeid):  # scripts/run-tests.sh runs these beside the rest (they mostly wait)
            item.add_marker(pytest.mark.milvus)


@pytest.fixture
def pillow_decodes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """A spy on Pillow's decoding (``Image.load``): the size of every image decoded while the test runs.

    So a test that means "refused without decoding" asserts the decoder was never called, instead of timing it
    (wall time on a shared machine says little, and nothing about why it was fast)."""
    from PIL import Image, ImageFile

    decoded: list[tuple[int, int]] = []
    for cls in (Image.Image, ImageFile.ImageFile):
        original = cls.load

        def load(self, _original=original):  # type: ignore[no-untyped-def]
            decoded.append(self.size)
            return _original(self)

        monkeypatch.setattr(cls, "load", load)
    return decoded


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
