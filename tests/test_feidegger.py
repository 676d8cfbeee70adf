"""FeideggerSource on a tiny file in the published FEIDEGGER 1.1 format, images served from 127.0.0.1.

Format (github.com/zalandoresearch/feidegger, data/FEIDEGGER_release_1.1.json; read the same way by
Flair's FeideggerDataset): a JSON list of {"url": str, "descriptions": [str, ...], "split": int}.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from lookalike.errors import FetchError, SourceError
from lookalike.sources import AddressGuard, FeideggerSource, open_source


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 9), color).save(buffer, format="JPEG")
    return buffer.getvalue()


IMAGES = {
    "a/0VB21C000-A11@12.1.jpg": _jpeg((200, 0, 0)),
    "b/AN621C0ZN-Q11@8.jpg": _jpeg((0, 200, 0)),
    "c/AN621C0ZN-Q11@8.jpg": _jpeg((0, 0, 200)),  # same file name as b/: ids fall back to a hash
}


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    for relative, data in IMAGES.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def _document(base: str) -> list[dict[str, object]]:
    return [
        {
            "url": f"{base}/a/0VB21C000-A11@12.1.jpg",
            "descriptions": [
                "Ein rotes Kleid mit kurzen Ärmeln und rundem Ausschnitt.",
                "Knielanges Kleid in Rot, schmal geschnitten.",
                "Rotes Sommerkleid.",
            ],
            "split": 4,
        },
        {"url": f"{base}/b/AN621C0ZN-Q11@8.jpg", "descriptions": ["Grünes Maxikleid."], "split": 8},
        {"url": f"{base}/c/AN621C0ZN-Q11@8.jpg", "descriptions": ["Blaues Etuikleid.", "Blau."], "split": 9},
    ]


def _short_hash(url: str) -> str:
    return "u" + hashlib.sha256(url.encode()).hexdigest()[:16]


def test_items_ids_metadata_and_bytes(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = served
    path = tmp_path / "FEIDEGGER_release_1.1.json"
    path.write_text(json.dumps(_document(base), ensure_ascii=False), encoding="utf-8")
    items = list(FeideggerSource(str(path)))

    b_url, c_url = f"{base}/b/AN621C0ZN-Q11@8.jpg", f"{base}/c/AN621C0ZN-Q11@8.jpg"
    assert [i.id for i in items] == ["0VB21C000-A11@12.1", _short_hash(b_url), _short_hash(c_url)]
    assert [i.location for i in items] == [f"{base}/a/0VB21C000-A11@12.1.jpg", b_url, c_url]
    assert items[0].metadata == {
        "description": "Ein rotes Kleid mit kurzen Ärmeln und rundem Ausschnitt.",
        "n_descriptions": 3,
        "split": 4,
    }
    assert items[2].metadata == {"description": "Blaues Etuikleid.", "n_descriptions": 2, "split": 9}
    assert [i.read() for i in items] == list(IMAGES.values())


def test_json_read_from_url_and_guard(served: tuple[str, Path]) -> None:
    base, root = served
    (root / "feidegger.json").write_text(json.dumps(_document(base)), encoding="utf-8")
    source = open_source(f"feidegger:{base}/feidegger.json")
    assert isinstance(source, FeideggerSource)
    assert len(source) == 3
    with pytest.raises(FetchError, match="refusing"):
        FeideggerSource(f"{base}/feidegger.json", guard=AddressGuard())
    allowed = FeideggerSource(f"{base}/feidegger.json", guard=AddressGuard(allow=["127.0.0.1"]))
    assert next(iter(allowed)).read() == IMAGES["a/0VB21C000-A11@12.1.jpg"]


def test_image_reads_go_through_the_guard(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = served
    path = tmp_path / "f.json"
    path.write_text(json.dumps(_document(base)), encoding="utf-8")
    (item, *_) = FeideggerSource(str(path), guard=AddressGuard())  # a local file: only images are fetched
    with pytest.raises(FetchError, match="refusing"):
        item.read()


def test_release_1_0_shape_one_entry_per_description_is_merged(tmp_path: Path) -> None:
    url = "https://img.example/article/XY123-Z45@1.jpg"
    path = tmp_path / "old.json"
    path.write_text(
        json.dumps([{"url": url, "description": "Erste."}, {"url": url, "description": "Zweite."}]),
        encoding="utf-8",
    )
    (item,) = FeideggerSource(str(path))
    assert item.id == "XY123-Z45@1"
    assert item.metadata == {"description": "Erste.", "n_descriptions": 2}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"descriptions": ["x"], "split": 1}, "'url' must be an http"),
        ({"url": "file:///etc/passwd", "descriptions": ["x"]}, "'url' must be an http"),
        ({"url": "https://img.example/a.jpg", "descriptions": "x"}, "'descriptions' must be a list"),
        ({"url": "https://img.example/a.jpg"}, "no 'descriptions'"),
        ({"url": "https://img.example/a.jpg", "descriptions": [], "split": "train"}, "'split' must be"),
        ("just a string", "expected an object"),
    ],
)
def test_malformed_entry_names_its_index(tmp_path: Path, entry: object, message: str) -> None:
    good = {"url": "https://img.example/ok.jpg", "descriptions": ["ok"], "split": 0}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([good, good | {"url": "https://img.example/ok2.jpg"}, entry]), encoding="utf-8")
    with pytest.raises(SourceError, match=rf"entry 2: {message}"):
        FeideggerSource(str(path))


def test_malformed_file(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("[{", encoding="utf-8")
    with pytest.raises(SourceError, match="not valid FEIDEGGER JSON"):
        FeideggerSource(str(tmp_path / "broken.json"))
    (tmp_path / "object.json").write_text('{"url": "https://x/a.jpg"}', encoding="utf-8")
    with pytest.raises(SourceError, match="expected a JSON list"):
        FeideggerSource(str(tmp_path / "object.json"))
    with pytest.raises(SourceError, match="not found"):
        FeideggerSource(str(tmp_path / "absent.json"))
