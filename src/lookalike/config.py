"""Typed settings in one place, read from ``LOOKALIKE_*`` environment variables.

Everything has a default that works on a laptop, so no configuration is needed to start.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lookalike"


class Settings(BaseSettings):
    """Process-wide defaults; command-line options override them."""

    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_", extra="ignore")

    index: Path = Path(".lookalike/index")
    """Where the embedded index lives unless ``--index`` says otherwise."""
    backend: str = "embedded"
    """embedded, opensearch or milvus."""
    url: str | None = None
    """The OpenSearch or Milvus server, for those backends."""
    name: str = "lookalike"
    """The index (collection) name on a server backend."""
    cache: Path = _default_cache()
    """Exported ONNX models and downloaded data sets."""
    model: str = "efficientnet-lite1"
    """The model for a new index: the best-quality setting that keeps ingest at 100 images/s and a query
    at 20 ms on 2 cores (docs/benchmarks.md: same-label precision@10 0.670 against Lite0's 0.650, 113
    against 153 images/s, 11.6 against 8.8 ms)."""
    threads: int = 0
    """ONNX Runtime threads; 0 means one per core."""
    providers: list[str] = ["cpu"]
    """ONNX Runtime execution providers by preference, e.g. ``["cuda", "cpu"]`` or ``["openvino"]``; one the
    installed onnxruntime lacks is skipped with a warning, and the CPU is always the fallback."""
    resnet50_weights: str | None = None
    """Local path or URL of torchvision-format ResNet50 weights."""

    # The web API (``lookalike serve``).
    api_key: str | None = None
    """Required by the write routes; without one the server is read-only."""
    cors_origins: list[str] = ["*"]
    """Origins allowed to call the API from a browser (the reference front end runs on another origin)."""
    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    """Decompression-bomb guard: images that would decode to more pixels are refused before decoding. A JPEG
    counts the pixels of the DCT scale it is decoded at (an 8000x6000 phone photo is 1000x750 for the model),
    its header being held to ``images.MAX_JPEG_PIXELS`` (120 M) and its coefficients to ``max_decode_bytes``;
    other formats count their header's size."""
    max_decode_bytes: int = 192 * 1024 * 1024
    """Memory one decode may need (estimated from the header, by format, mode and size) before it is refused;
    with ``max_decodes`` at once, their product bounds the memory images can take."""
    max_decode_seconds: float = 3.0
    """CPU seconds one decode may take before it is abandoned (checked as the decoder reads its input)."""
    url_allow: list[str] = []
    """Hosts or networks a query URL may point at even though they are private (e.g. 127.0.0.1 in tests)."""
    url_timeout: float = 10.0
    """Seconds a query URL's server may take for each step (connect, each read)."""
    url_total_timeout: float = 20.0
    """Seconds a whole query-URL fetch may take, so a peer dripping a byte at a time frees its slot."""
    max_url_fetches: int = 8
    """Query URLs fetched at once; more wait (``busy_wait``) or are refused with 503."""
    max_decodes: int = 0
    """Query and upload images decoded and embedded at once (0: one per core); bounds peak memory."""
    max_waiting: int = 64
    """Requests that may wait for a fetch or decode slot; beyond that 503 at once."""
    busy_wait: float = 10.0
    """Seconds a request waits for a fetch or decode slot before 503."""
    trusted_proxies: list[str] = []
    """Addresses of reverse proxies whose X-Forwarded-For/-Proto are believed (uvicorn's forwarded_allow_ips);
    empty: none, so a client cannot pick its own address for the rate limit."""
    public_url: str | None = None
    """The server's public base URL (``https://shop.example/search``): links the reference routes answer are
    built on it instead of on the request's Host header, which any client can set."""
    query_cache: int = 256
    """Uploaded query images kept (in memory) so their searches can be repeated and shared by URL."""
    query_store_bytes: int = 512 * 1024 * 1024
    """Disk kept for query images behind that cache (``<index>/queries/``), so a shared link outlives a restart:
    the oldest go first past this size (0: no disk store)."""
    query_store_days: float = 30.0
    """How long a query image stays on disk since it was last searched with."""
    display: str = ""
    """How the page shows items, over the index's own setting: ``title=name,price=cost,currency=EUR``
    (``lookalike display --help`` lists the roles)."""
    hide: list[str] = []
    """Filter values (``label=Skip``) or whole fields (``sender_id``) the page does not offer, over the
    index's own setting."""
    rate_limit: str | None = None
    """Requests per client address, e.g. "30/s" or "600/min" (a token bucket each); unset: no limit."""
    rate_burst: int | None = None
    """Requests a client may send at once before the rate applies; default twice the per-second rate, at least 10."""
    save_seconds: float | None = 30.0
    """A server taking writes saves its index (FAISS checkpoint; dead vectors of replaced and deleted items
    compacted away once they are a quarter) after a write at most this often. ``None``: only at shutdown, so
    each replace or delete keeps one dead vector in memory until then."""

    @field_validator("save_seconds", mode="before")
    @classmethod
    def _optional_seconds(cls, value: object) -> object:
        """``SAVE_SECONDS=off`` (or none, or empty): save only at shutdown."""
        if isinstance(value, str) and value.strip().lower() in ("", "off", "none"):
            return None
        return value

    @field_validator("rate_limit")
    @classmethod
    def _valid_rate(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower() not in ("", "off", "none"):
            parse_rate(value)  # fail at startup, not at the first request
            return value.strip()
        return None


_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}


def parse_rate(text: str) -> float:
    """ "30/s", "600/min", "1000/h" as requests per second."""
    count, _, period = text.strip().lower().partition("/")
    seconds = _PERIODS.get(period.strip().removesuffix("s") if period.strip() not in _PERIODS else period.strip())
    try:
        requests = float(count)
    except ValueError:
        requests = -1.0
    if seconds is None or not requests > 0 or requests == float("inf"):
        raise ValueError(f"a rate limit looks like 30/s, 600/min or 1000/h, not {text!r}")
    return requests / seconds


def get_settings() -> Settings:
    return Settings()
