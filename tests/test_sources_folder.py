"""FolderSource over a local tree and the same tree in S3 (moto server on 127.0.0.1)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from lookalike.errors import SourceError
from lookalike.sources import FolderSource, open_source


def _image(fmt: str, color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 4), color).save(buffer, format=fmt)
    return buffer.getvalue()


# relative path -> bytes; the hidden ones and the non-images must never show up.
TREE: dict[str, bytes] = {
    "tops/red.jpg": _image("JPEG", (220, 20, 20)),
    "tops/blue.PNG": _image("PNG", (20, 20, 220)),
    "tops/striped/navy.jpeg": _image("JPEG", (10, 10, 80)),
    "shoes/boot.webp": _image("WEBP", (90, 60, 30)),
    "loose.gif": _image("GIF", (0, 0, 0)),
    "notes.txt": b"not an image",
    "tops/readme.md": b"# no",
    ".hidden.jpg": _image("JPEG", (1, 2, 3)),
    ".cache/thumb.jpg": _image("JPEG", (4, 5, 6)),
    "tops/.trash/old.png": _image("PNG", (7, 8, 9)),
}
EXPECTED_IDS = ["loose.gif", "shoes/boot.webp", "tops/blue.PNG", "tops/red.jpg", "tops/striped/navy.jpeg"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "catalogue"
    for relative, data in TREE.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def test_lists_images_recursively_sorted_with_posix_ids(tree: Path) -> None:
    source = FolderSource(str(tree))
    assert [item.id for item in source] == EXPECTED_IDS
    assert len(source) == 5


def test_locations_are_absolute_paths_and_read_returns_exact_bytes(tree: Path) -> None:
    for item in FolderSource(str(tree)):
        assert os.path.isabs(item.location)
        assert Path(item.location) == tree / item.id
        assert item.read() == TREE[item.id]


def test_metadata_is_first_level_folder(tree: Path) -> None:
    metadata = {item.id: item.metadata for item in FolderSource(str(tree))}
    assert metadata["tops/striped/navy.jpeg"] == {"folder": "tops"}
    assert metadata["shoes/boot.webp"] == {"folder": "shoes"}
    assert metadata["loose.gif"] == {}


def test_extension_filter(tree: Path) -> None:
    assert [i.id for i in FolderSource(str(tree), extensions={".png"})] == ["tops/blue.PNG"]
    # with or without the dot, any case
    assert [i.id for i in FolderSource(str(tree), extensions=["JPG", "jpeg"])] == [
        "tops/red.jpg",
        "tops/striped/navy.jpeg",
    ]


def test_relative_root_and_trailing_slash(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree.parent)
    assert [i.id for i in FolderSource("catalogue/")] == EXPECTED_IDS


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"folder not found: .*nowhere"):
        FolderSource(str(tmp_path / "nowhere"))


def test_root_that_is_a_file(tree: Path) -> None:
    with pytest.raises(SourceError, match="not a folder"):
        FolderSource(str(tree / "loose.gif"))


def test_read_of_vanished_file_raises_source_error(tree: Path) -> None:
    item = next(i for i in FolderSource(str(tree)) if i.id == "tops/red.jpg")
    (tree / "tops/red.jpg").unlink()
    with pytest.raises(SourceError, match=r"red\.jpg"):
        item.read()


def test_open_source_local_folder(tree: Path) -> None:
    source = open_source(str(tree))
    assert isinstance(source, FolderSource)
    assert [i.id for i in source] == EXPECTED_IDS


# --- the same tree in S3 --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.delenv("AWS_PROFILE", raising=False)
        server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
        server.stop()


@pytest.fixture(scope="module")
def s3_tree(s3_endpoint: str) -> str:
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="lookalike-folder")
    for relative, data in TREE.items():
        client.put_object(Bucket="lookalike-folder", Key=f"shop/{relative}", Body=data)
    return "s3://lookalike-folder/shop/"


def _options(endpoint: str) -> dict[str, object]:
    return {"client_kwargs": {"endpoint_url": endpoint}}


def test_s3_ids_equal_local_case(s3_tree: str, s3_endpoint: str, tree: Path) -> None:
    remote = FolderSource(s3_tree, storage_options=_options(s3_endpoint))
    local = FolderSource(str(tree))
    assert [i.id for i in remote] == [i.id for i in local] == EXPECTED_IDS
    assert [i.metadata for i in remote] == [i.metadata for i in local]


def test_s3_locations_and_bytes(s3_tree: str, s3_endpoint: str) -> None:
    for item in FolderSource(s3_tree, storage_options=_options(s3_endpoint)):
        assert item.location == f"s3://lookalike-folder/shop/{item.id}"
        assert item.read() == TREE[item.id]


def test_s3_without_trailing_slash_via_open_source(s3_tree: str, s3_endpoint: str) -> None:
    source = open_source(s3_tree.rstrip("/"), storage_options=_options(s3_endpoint))
    assert [i.id for i in source] == EXPECTED_IDS


def test_s3_missing_prefix(s3_tree: str, s3_endpoint: str) -> None:
    with pytest.raises(SourceError, match="folder not found: s3://lookalike-folder/nothing-here/"):
        FolderSource("s3://lookalike-folder/nothing-here/", storage_options=_options(s3_endpoint))
