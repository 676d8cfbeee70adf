"""The command line as a user runs it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def run(cache_dir, lite0, tmp_path):
    env = dict(os.environ, LOOKALIKE_CACHE=str(cache_dir), LOOKALIKE_INDEX=str(tmp_path / "default-index"))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "lookalike.cli", *args], env=env, capture_output=True, text=True, timeout=300
        )

    return run


def test_index_search_info_delete_eval(run, photo_folder: Path, tmp_path: Path) -> None:
    index = str(tmp_path / "idx")
    (photo_folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    result = run("index", str(photo_folder), "--index", index, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "12 indexed" in result.stdout and "1 failed" in result.stdout
    assert "broken.jpg" in result.stderr
    assert "calibrated on" in result.stdout  # an ingest ends by learning the catalogue's match tiers

    query = photo_folder / "tops" / "item-03.jpg"
    result = run("search", str(query), "--index", index, "-k", "3", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["model"] == "efficientnet-lite0"
    assert answer["results"][0]["id"] == "tops/item-03.jpg"
    assert len(answer["results"]) == 3
    assert answer["match"] == "same_item" == answer["results"][0]["tier"]

    result = run("search", "tops/item-03.jpg", "--index", index, "-k", "4", "--filter", "folder=shoes", "--json")
    results = json.loads(result.stdout)["results"]
    assert len(results) == 4 and all(r["metadata"]["folder"] == "shoes" for r in results)

    result = run("search", str(query), "--index", index, "-k", "2")
    assert result.returncode == 0 and "tops/item-03.jpg" in result.stdout.splitlines()[1]
    assert "match: same_item" in result.stdout.splitlines()[0] and "same_item" in result.stdout.splitlines()[1]

    info = json.loads(run("info", "--index", index, "--json").stdout)
    assert (info["model"], info["dim"], info["items"], info["metric"]) == ("efficientnet-lite0", 1280, 12, "cosine")
    assert info["notes"] == ["calibration"]
    again = run("calibrate", "--index", index, "--samples", "10", "--seed", "3", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["measured"]["copies"] == 30
    duplicates = run("duplicates", "--index", index, "--json")
    assert duplicates.returncode == 0 and json.loads(duplicates.stdout) == {"groups": []}  # 12 distinct photos
    assert run("duplicates", "--index", index).stdout.startswith("0 groups of near-identical images")

    assert run("delete", "tops/item-03.jpg", "--index", index).returncode == 0
    assert json.loads(run("info", "--index", index, "--json").stdout)["items"] == 11
    assert run("delete", "tops/item-03.jpg", "--index", index).returncode == 1

    result = run("eval", "--index", index, "--label-field", "folder", "-k", "3", "--json")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["queries"] == 11 and 0.0 <= scores["precision@3_exact"] <= 1.0
    assert scores["recall@3_hnsw_vs_exact"] == pytest.approx(1.0)


def test_the_progress_bar_and_the_summary_agree_with_the_files_listed(run, photo_folder: Path, tmp_path: Path) -> None:
    """The bar's last counts are the summary's, and its "failed" are the files listed as failed."""
    (photo_folder / "broken.jpg").write_bytes((photo_folder / "tops" / "item-01.jpg").read_bytes()[:600])
    (photo_folder / "notes.jpg").write_text("this is not a picture")
    (photo_folder / "empty.png").write_bytes(b"")
    result = run("index", str(photo_folder), "--index", str(tmp_path / "idx"), "--batch-size", "5")
    assert result.returncode == 0, result.stderr
    bars = re.findall(r"(\d+)/15 \[[^]]*indexed=(\d+), unchanged=(\d+), failed=(\d+)\]", result.stderr)
    assert bars and bars[-1] == ("15", "12", "0", "3"), result.stderr
    assert all(int(done) == sum(map(int, counts)) for done, *counts in bars), bars
    assert "12 indexed, 0 already indexed, 3 failed, of 15" in result.stdout
    listed = re.findall(r"^  failed (\S+): \S", result.stderr, flags=re.MULTILINE)
    assert sorted(listed) == ["broken.jpg", "empty.png", "notes.jpg"], result.stderr
    assert "skipped" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("search", "x.jpg", "--index", "{tmp}/absent"), "lookalike index"),
        (("info", "--index", "{tmp}/absent"), "no index"),
        (("index", "{tmp}/no-such-folder", "--index", "{tmp}/i"), "no-such-folder"),
        (("index", "{tmp}", "--index", "{tmp}/i", "--no-progress"), "holds no images"),  # an empty folder says so
        (("index", "{tmp}", "--index", "{tmp}/i"), "holds no images"),  # in one line with the bar on too
    ],
)
def test_errors_are_one_line_and_exit_non_zero(run, tmp_path, args, message) -> None:
    result = run(*[arg.format(tmp=tmp_path) for arg in args])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("search", "x.jpg", "-k", "0"), "Invalid value for '-k'"),
        (("search", "x.jpg", "-k", "101"), "Invalid value for '-k'"),
        (("nosuch",), "No such command 'nosuch'"),
        (("search",), "give a QUERY"),
    ],
)
def test_usage_errors_are_one_line_too(run, args, message) -> None:
    result = run(*args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and message in result.stderr
    assert "--help" in result.stderr


def test_search_errors_name_the_problem(run, photo_folder, tmp_path) -> None:
    index = str(tmp_path / "idx")
    assert run("index", str(photo_folder), "--index", index, "--no-progress").returncode == 0
    for args, message in [
        (("search", "no-such-thing", "--index", index), "not an image file"),
        (
            ("search", str(photo_folder / "tops" / "item-01.jpg"), "--index", index, "--filter", "price>=cheap"),
            "bad filter",
        ),
        (("search", "--id", "missing-id", "--index", index), "no item with id"),
    ]:
        result = run(*args)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("hello")
    result = run("search", str(not_image), "--index", index)
    assert result.returncode == 1 and result.stderr.startswith("error:")


def test_models_lists_the_registry(run) -> None:
    lines = run("models").stdout.splitlines()
    starts = {line.index(line.split()[1]) for line in lines}
    assert len(starts) == 1, lines  # the descriptions start in one column
    result = run("models")
    assert result.returncode == 0 and "efficientnet-lite0" in result.stdout and "resnet50" in result.stdout


def test_quantized_structure_options_reach_the_index(run, photo_folder, tmp_path) -> None:
    index = str(tmp_path / "idx")
    options = ("--encoding", "sq8", "--reduce-dim", "8", "--rerank", "3", "--rerank-encoding", "sq8")
    result = run("index", str(photo_folder), "--index", index, "--no-progress", *options)
    assert result.returncode == 0, result.stderr
    info = json.loads(run("info", "--index", index, "--json").stdout)
    assert (info["encoding"], info["reduce_dim"], info["rerank"], info["rerank_encoding"]) == ("sq8", 8, 3, "sq8")
    assert info["trained"] is False  # 12 photos are too few to train on: still exact float staging
    result = run("index", str(photo_folder), "--index", str(tmp_path / "bad"), "--rerank-encoding", "pq")
    assert result.returncode == 1 and "rerank_encoding must be one of none, fp16, sq8" in result.stderr
    assert not (tmp_path / "bad" / "index.sqlite").exists()


def test_the_cli_and_the_api_share_one_limit_on_k_and_offset() -> None:
    import typer

    from lookalike.cli import app
    from lookalike.search import MAX_K, MAX_OFFSET

    search = typer.main.get_command(app).commands["search"]  # type: ignore[attr-defined]
    limits = {param.name: param.max for param in search.params if param.name in ("k", "offset")}
    assert limits == {"k": MAX_K, "offset": MAX_OFFSET}
