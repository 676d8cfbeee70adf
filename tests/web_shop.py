"""What the shop-page browser tests share: a live server over a real shop catalogue, and Playwright.

The catalogue is the package's CC0 clothing sample (300 real photos, 17 kinds), given the fields a shop has
(name, price, currency, link, brand) through a CSV manifest, with two copies of one photo (for folding) and a
few items labelled "Skip" (a value the page hides). It is indexed with EfficientNet-Lite0 and calibrated, so
results carry tiers ("same item", "no close match").
"""

from __future__ import annotations

import csv
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lookalike.catalog import Catalog
from lookalike.config import Settings
from lookalike.sources.datasets import SAMPLE_DIR

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).resolve().parents[1] / "test-output"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
BRANDS = ("Northwind", "Alder & Oak", "Kestrel", "Maple Street")
SKIPPED = 4
"""Items relabelled "Skip" (the page is told to hide that value)."""
DUPLICATE_OF = 7
"""The row whose photo is indexed a second time, under another id."""


def shop_rows() -> list[dict[str, Any]]:
    """The sample's rows as a shop's catalogue (deterministic)."""
    with (SAMPLE_DIR / "images.csv").open(newline="") as handle:
        sample = list(csv.DictReader(handle))
    rows = []
    for number, row in enumerate(sample):
        label = "Skip" if number < SKIPPED else row["label"]
        rows.append(
            {
                "id": f"sku-{number:03d}",
                "path": str(SAMPLE_DIR / "images" / f"{row['image']}.jpg"),
                "name": f"{row['label']} no. {number}",
                "price": round(5 + (number * 37 % 140) + (number % 100) / 100, 2),
                "currency": "EUR",
                "link": f"https://shop.example/products/sku-{number:03d}",
                "brand": BRANDS[number % len(BRANDS)],
                "label": label,
                "kids": row["kids"],
            }
        )
    copy = dict(rows[DUPLICATE_OF], id=f"sku-{DUPLICATE_OF:03d}-copy")
    return [*rows, copy]


def write_manifest(path: Path) -> list[dict[str, Any]]:
    rows = shop_rows()
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(catalog: Catalog, settings: Settings) -> Iterator[tuple[str, Any]]:
    """lookalike's app under uvicorn on 127.0.0.1 in a thread: (its address, the app)."""
    import uvicorn

    from lookalike.api import create_app

    app = create_app(catalog, settings)
    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        instance.should_exit = True
        thread.join(timeout=10)


def wait_done(page: Any) -> None:
    page.wait_for_selector("body[data-state='done'], body[data-state='error']", timeout=30_000)


def result_ids(page: Any) -> list[str]:
    return page.eval_on_selector_all("#results .result", "nodes => nodes.map(n => n.dataset.id)")


def screenshot(page: Any, name: str, full_page: bool = True) -> None:
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / name), full_page=full_page)
