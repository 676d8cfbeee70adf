"""The demo catalogue: the public-domain clothing data set (alexeygrigorev/clothing-dataset).

``lookalike ingest clothing`` must work on a fresh laptop, so the data set is looked for in the usual
places first and downloaded into the cache only as a last resort. Its labels make it usable for
measuring retrieval quality as well as for a demo. When the download fails too (no internet), a small
sample of it that ships in the package (:data:`SAMPLE_DIR`, 300 downscaled photos, made by
``scripts/make-sample-catalogue.py``) stands in, with a warning saying so.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
from fsspec.implementations.local import LocalFileSystem

from lookalike.errors import SourceError
from lookalike.sources.base import SourceItem
from lookalike.sources.folder import FsReader
from lookalike.sources.manifest import infer_value

log = logging.getLogger(__name__)

CLOTHING_ARCHIVE_URL = "https://github.com/alexeygrigorev/clothing-dataset/archive/refs/heads/master.zip"
CLOTHING_DIR_NAME = "clothing-dataset"
DATA_ENV = "LOOKALIKE_DATA"
CACHE_ENV = "LOOKALIKE_CACHE"
SAMPLE_DIR = Path(__file__).resolve().parent / "clothing-sample"
"""The sample catalogue in the package: the full set's format (``images.csv``, ``images/``), CC0 too."""
CONNECT_TIMEOUT = 10.0
"""Seconds to wait for the download's connection (a firewall that drops packets); no network fails at once."""
_HINT = f"download it yourself and point {DATA_ENV} at the unpacked folder"
_PROJECT_ROOT = Path(__file__).resolve().parents[3]
"""``src/lookalike/sources/datasets.py`` -> the checkout root, when installed editable (else unused)."""


def default_cache_dir() -> Path:
    """``$LOOKALIKE_CACHE``, else ``$XDG_CACHE_HOME/lookalike``, else ``~/.cache/lookalike``.

    Same rule as the ``cache`` setting in :mod:`lookalike.config`, without importing it (stages stay
    independent of the settings layer).
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lookalike"


def is_clothing_dataset(path: Path) -> bool:
    return (path / "images.csv").is_file() and (path / "images").is_dir()


def _candidates(data_dir: str | os.PathLike[str] | None, cache_dir: str | os.PathLike[str] | None) -> list[Path]:
    """Where to look, in order (see :func:`find_clothing_dataset`)."""
    found: list[Path] = []
    if data_dir is not None:
        base = Path(data_dir).expanduser()
        found += [base, base / CLOTHING_DIR_NAME]
    if os.environ.get(DATA_ENV):
        base = Path(os.environ[DATA_ENV]).expanduser()
        found += [base, base / CLOTHING_DIR_NAME]
    shared = Path("..") / "shared" / "datasets" / CLOTHING_DIR_NAME
    found.append(Path.cwd() / shared)
    found.append(_PROJECT_ROOT / shared)
    found.append(_cache_target(cache_dir))
    return found


def _cache_target(cache_dir: str | os.PathLike[str] | None) -> Path:
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return cache / "datasets" / CLOTHING_DIR_NAME


def find_clothing_dataset(
    data_dir: str | os.PathLike[str] | None = None, *, cache_dir: str | os.PathLike[str] | None = None
) -> Path | None:
    """The clothing data set's folder (with ``images.csv`` and ``images/``), or None; never downloads.

    Looks in: ``data_dir`` (the folder itself or one holding ``clothing-dataset/``); the same for
    ``$LOOKALIKE_DATA``; ``../shared/datasets/clothing-dataset`` from the working directory, then from
    the project checkout; finally ``<cache>/datasets/clothing-dataset``.
    """
    for candidate in _candidates(data_dir, cache_dir):
        if is_clothing_dataset(candidate):
            return candidate.resolve()
    return None


def download_clothing_dataset(
    url: str = CLOTHING_ARCHIVE_URL, *, cache_dir: str | os.PathLike[str] | None = None, timeout: float = 60.0
) -> Path:
    """Download and unpack the archive into ``<cache>/datasets/clothing-dataset``; return that folder.

    The archive streams to a temporary file next to the target and is unpacked there, then renamed into
    place in one step, so an interrupted download never leaves a half-filled folder that later looks
    complete. Zip member names are sanitised by :mod:`zipfile` (no absolute paths, no ``..``).
    """
    target = _cache_target(cache_dir)
    if is_clothing_dataset(target):
        return target
    hint = _HINT
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".clothing-download-", dir=target.parent))
    except OSError as exc:
        raise SourceError(f"cannot create the cache folder {target.parent}: {exc}") from exc
    try:
        archive = work / "archive.zip"
        log.info("downloading the clothing data set from %s", url)
        _download(url, archive, timeout=timeout, hint=hint)
        top = _extract(archive, work / "unpacked", url=url, hint=hint)
        try:
            os.replace(top, target)
        except OSError:
            if not is_clothing_dataset(target):  # else another process won the race: use its copy
                raise
    except OSError as exc:
        raise SourceError(f"cannot unpack the clothing data set from {url} into {target}: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _download(url: str, dest: Path, *, timeout: float, hint: str) -> None:
    try:
        with (
            httpx.stream(
                "GET", url, follow_redirects=True, timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT))
            ) as response,
            dest.open("wb") as out,
        ):
            if response.status_code != 200:
                raise SourceError(
                    f"cannot download the clothing data set from {url}: HTTP {response.status_code}; {hint}"
                )
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
    except httpx.HTTPError as exc:
        raise SourceError(f"cannot download the clothing data set from {url}: {exc}; {hint}") from exc


def _extract(archive: Path, into: Path, *, url: str, hint: str) -> Path:
    """Unpack and return the data set folder: the archive's single top folder, whatever its name."""
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise SourceError(f"the download from {url} is not a usable zip archive: {exc}; {hint}") from exc
    if is_clothing_dataset(into):
        return into
    tops = [p for p in into.iterdir() if p.is_dir() and p.name != "__MACOSX"]
    if len(tops) == 1 and is_clothing_dataset(tops[0]):
        return tops[0]
    raise SourceError(
        f"the archive from {url} does not hold the clothing data set "
        f"(expected one top folder with images.csv and images/); {hint}"
    )


class ClothingSource:
    """Rows of ``images.csv`` whose ``images/<image>.jpg`` exists.

    id: the image uuid; metadata: ``{"label": str, "kids": bool, "sender_id": int}``. Rows without a file
    are skipped and counted in :attr:`missing` (the published data set lists a few such rows).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.missing = 0
        self._items = self._load()

    def _load(self) -> list[SourceItem]:
        csv_path = self.root / "images.csv"
        images = self.root / "images"
        try:
            present = {entry.name for entry in os.scandir(images) if entry.is_file()}
            with csv_path.open(encoding="utf-8-sig", newline="") as handle:
                rows = list(csv.DictReader(handle))
        except OSError as exc:
            raise SourceError(f"cannot read the clothing data set at {self.root}: {exc}") from exc
        fs = LocalFileSystem()
        items: list[SourceItem] = []
        seen: set[str] = set()
        for number, row in enumerate(rows, start=1):
            image = (row.get("image") or "").strip()
            if not image:
                raise SourceError(f"{csv_path} row {number}: no image id")
            if image in seen:
                raise SourceError(f"{csv_path} row {number}: duplicate image id {image!r}")
            seen.add(image)
            if f"{image}.jpg" not in present:
                self.missing += 1
                continue
            path = str(images / f"{image}.jpg")
            items.append(
                SourceItem(
                    id=image,
                    location=path,
                    read=FsReader(fs, path, path),
                    metadata=_metadata(row, csv_path, number),
                )
            )
        return items

    def __iter__(self) -> Iterator[SourceItem]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"ClothingSource({str(self.root)!r}, {len(self)} images, {self.missing} missing)"


def _metadata(row: dict[str, str], csv_path: Path, number: int) -> dict[str, object]:
    label = (row.get("label") or "").strip()
    kids = infer_value(row.get("kids") or "")
    sender = infer_value(row.get("sender_id") or "")
    if not isinstance(kids, bool) or isinstance(sender, bool) or not isinstance(sender, int):
        raise SourceError(
            f"{csv_path} row {number}: expected kids True/False and an integer sender_id, "
            f"got {row.get('kids')!r} and {row.get('sender_id')!r}"
        )
    return {"label": label, "kids": kids, "sender_id": sender}


def sample_clothing_dataset() -> ClothingSource:
    """The sample catalogue that ships in the package (:data:`SAMPLE_DIR`)."""
    return ClothingSource(SAMPLE_DIR)


def clothing_dataset(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download_url: str = CLOTHING_ARCHIVE_URL,
    cache_dir: str | os.PathLike[str] | None = None,
    fallback: bool = True,
) -> ClothingSource:
    """The demo catalogue, found (:func:`find_clothing_dataset`) or else downloaded into the cache.

    If the download fails as well and ``fallback`` is true, the sample in the package
    (:func:`sample_clothing_dataset`), with one warning line naming the reason and how to get the full set;
    with ``fallback`` false, the download's :class:`SourceError`. An explicit ``data_dir`` that does not
    hold the data set is an error, not a reason to download.
    """
    if data_dir is not None:
        base = Path(data_dir).expanduser()
        for candidate in (base, base / CLOTHING_DIR_NAME):
            if is_clothing_dataset(candidate):
                return ClothingSource(candidate)
        raise SourceError(f"no clothing data set at {data_dir} (expected images.csv and images/)")
    found = find_clothing_dataset(cache_dir=cache_dir)
    if found is None:
        try:
            found = download_clothing_dataset(download_url, cache_dir=cache_dir)
        except SourceError as exc:
            if not fallback or not is_clothing_dataset(SAMPLE_DIR):
                raise
            sample = sample_clothing_dataset()
            log.warning(
                "lookalike: using the %d-photo clothing SAMPLE catalogue (%s), not the full data set (5,398 "
                "photos): none in $%s, ../shared/datasets or %s, and %s. For the full one, run this again with "
                "internet, or set %s to an unpacked copy of that archive.",
                len(sample),
                SAMPLE_DIR,
                DATA_ENV,
                _cache_target(cache_dir),
                _reason(exc),
                DATA_ENV,
            )
            return sample
    return ClothingSource(found)


def _reason(exc: SourceError) -> str:
    """The download error without its how-to-get-it-yourself hint (the warning gives its own)."""
    text = str(exc).removesuffix(f"; {_HINT}")
    return text[:1].lower() + text[1:]
