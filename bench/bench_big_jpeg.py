"""Phone-camera JPEGs and JPEG bombs through the guarded decode: CPU time and peak memory of each.

Makes an 8000x6000 photo the way a phone camera's comes out: a clothing-dataset picture upscaled, with luma
grain so that it compresses like one (about 2.6 MB at quality 85, 4:2:0), saved baseline and progressive.
Each case runs in a fresh process: ``load_image`` at the model's decode size (efficientnet-lite1, the default
model: shorter side 274, so an 8000x6000 JPEG is drafted to 1/8 and decoded as 1000x750), then the model's
resize-and-crop. Reported: the CPU time of the decode (median of ``--repeat``, the thread's own CPU, which
is what the decode deadline counts), its wall time, how far the first decode raised the process's resident
memory at its peak (the kernel's high-water mark ``VmHWM``, reset by writing 5 to ``/proc/self/clear_refs``
just before; ``ru_maxrss`` where that does not work), and ``load_image``'s own estimate of that memory. The same photos
at full size (no draft) show what the DCT scaling saves, and the bombs show what is still refused and how
fast. Prints the machine (CPU model and ``lscpu`` flags); writes ``bench/results/big-jpeg.json``.

    python bench/bench_big_jpeg.py [--repeat 5] [--photo PATH] [--out bench/results/big-jpeg.json]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from hostile import corpus  # noqa: E402

from lookalike import images  # noqa: E402
from lookalike.embed.efficientnet import VARIANTS  # noqa: E402
from lookalike.errors import ImageError  # noqa: E402

PREPROCESSING = VARIANTS["efficientnet-lite1"].preprocessing  # the default model; decode_min_side = resize
PHOTO = ROOT.parent / "shared" / "datasets" / "clothing-dataset" / "images" / "00143901-a14c-4600-960f-7747b4a3a8cd.jpg"
SIZE = (8000, 6000)
GRAIN = 1.0  # luma noise (standard deviation, 8-bit levels): 2.6 MB at quality 85, like a phone's 48 MP photo


def phone_photo(photo: Path, size: tuple[int, int] = SIZE, grain: float = GRAIN) -> Image.Image:
    """``photo`` upscaled to ``size`` with a film-like luma grain: an upscale alone is too smooth to compress
    like a camera's picture; a synthetic gradient when the data set is not here."""
    width, height = size
    if photo.exists():
        base = Image.open(photo).convert("RGB").resize(size, Image.Resampling.BICUBIC)
    else:
        ramp = np.linspace(40, 220, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3), np.float32)
        base = Image.fromarray(ramp.astype(np.uint8))
    pixels = np.asarray(base, dtype=np.int16)
    noise = np.random.default_rng(0).normal(0, grain, (height, width, 1)).astype(np.int16)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def encode(image: Image.Image, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **params)
    return buffer.getvalue()


def grey_scan_bomb(size: tuple[int, int], scans: int) -> bytes:
    """A flat grey progressive JPEG of ``size`` whose last scan is repeated up to ``scans`` scans in all
    (the shape of the hostile corpus's scan bomb, at any size)."""
    data = encode(Image.new("L", size, 128), progressive=True, quality=75)
    last_scan, end = data.rindex(b"\xff\xc4"), data.rindex(b"\xff\xd9")
    return data[:end] + data[last_scan:end] * (scans - images._jpeg_scan_count(data)) + data[end:]


def progressive_header(width: int, height: int) -> bytes:
    """A small real progressive JPEG whose SOF2 claims ``width`` x ``height`` (the rest is missing)."""
    data = bytearray(encode(corpus.photo(5, (64, 64)), progressive=True, quality=80))
    at = data.index(b"\xff\xc2")
    data[at + 5 : at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def cases(photo: Path) -> list[tuple[str, bytes, dict[str, Any]]]:
    """(name, file, load_image keywords); ``min_side`` is the model's unless given."""
    picture = phone_photo(photo)
    baseline, progressive = encode(picture, quality=85), encode(picture, quality=85, progressive=True)
    full = {"min_side": None, "max_pixels": SIZE[0] * SIZE[1]}  # the old rule would refuse these outright
    return [
        ("phone 8000x6000 baseline", baseline, {}),
        ("phone 8000x6000 progressive", progressive, {}),
        ("phone baseline, full size, max_pixels 48M", baseline, full),
        ("phone progressive, full size, max_pixels 48M", progressive, full),
        ("header 65000x65000", corpus.jpeg_with_dimensions(65000, 65000), {}),
        ("header 13000x13000", corpus.jpeg_with_dimensions(13000, 13000), {}),
        ("header 12000x10000", corpus.jpeg_with_dimensions(12000, 10000), {}),
        ("progressive header 12000x10000", progressive_header(12000, 10000), {}),
        ("grey 8000x6000, 100 scans", grey_scan_bomb((8000, 6000), 100), {}),
        ("grey 6000x6000, 100 scans", grey_scan_bomb((6000, 6000), 100), {}),
    ]


def worker(path: str, keywords: str, repeat: int) -> None:
    """One case in this fresh process: prints its numbers as JSON."""
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # Pillow's own, from 89.5 megapixels
    data = Path(path).read_bytes()
    options = json.loads(keywords)
    options.setdefault("min_side", PREPROCESSING.resize)
    result: dict[str, Any] = {"bytes": len(data), "estimate_mb": estimate(data, options["min_side"])}
    before = peak_reset()
    cpu, wall = [], []
    for _ in range(repeat):
        started_cpu, started = time.thread_time(), time.perf_counter()
        try:
            image = images.load_image(data, **options)
        except ImageError as exc:
            cpu.append(time.thread_time() - started_cpu)
            wall.append(time.perf_counter() - started)
            result["refused"] = str(exc)
            break
        cpu.append(time.thread_time() - started_cpu)
        wall.append(time.perf_counter() - started)
        result["decoded"] = list(image.size)
        result.setdefault("rise_mb", rise(before))  # the first decode's
        started_cpu = time.thread_time()
        images.resize_and_crop(image, PREPROCESSING.resize, PREPROCESSING.crop)
        result.setdefault("crop_cpu_s", []).append(time.thread_time() - started_cpu)
        del image
    result.setdefault("rise_mb", rise(before))
    result["memory_method"] = before[0]
    result["cpu_s"], result["wall_s"] = statistics.median(cpu), statistics.median(wall)
    if "crop_cpu_s" in result:
        result["crop_cpu_s"] = statistics.median(result["crop_cpu_s"])
    print(json.dumps(result))


def _status_kib(field: str) -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1])


def peak_reset() -> tuple[str, int]:
    """Start measuring a peak: ("VmHWM", the resident KiB now) after resetting the kernel's high-water mark,
    or ("ru_maxrss", the peak so far) where that cannot be done."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        if _status_kib("VmHWM") <= _status_kib("VmRSS") + 1024:
            return "VmHWM", _status_kib("VmRSS")
    except (OSError, StopIteration, ValueError):
        pass
    return "ru_maxrss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rise(before: tuple[str, int]) -> float:
    """MiB the peak resident memory rose over what :func:`peak_reset` saw."""
    method, kib = before
    peak = _status_kib("VmHWM") if method == "VmHWM" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round((peak - kib) / 1024, 1)


def estimate(data: bytes, min_side: int | None) -> float | None:
    """``load_image``'s memory estimate for ``data`` (the same draft), in MiB; None when it refuses sooner."""
    try:
        image = images._open(data)
        full = image.size
        scans = images._jpeg_scan_count(data)
        if min_side:
            scale = images._jpeg_scale(min(full), min_side)
            if scale > 1:
                image.draft("RGB", (full[0] // scale, full[1] // scale))
        return round(images._decode_bytes_needed(image, full, scans, len(data)) / 2**20, 1)
    except ImageError:
        return None


def run_case(name: str, data: bytes, keywords: dict[str, Any], repeat: int, folder: Path) -> dict[str, Any]:
    path = folder / f"{len(list(folder.iterdir()))}.jpg"
    path.write_bytes(data)
    command = [sys.executable, __file__, "--worker", str(path), json.dumps(keywords), "--repeat", str(repeat)]
    output = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True).stdout
    return {"case": name, **json.loads(output.splitlines()[-1])}


def lscpu_flags() -> str:
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return next((line.split(":", 1)[1].strip() for line in output.splitlines() if line.startswith("Flags")), "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--photo", type=Path, default=PHOTO, help="the picture to make the phone photo from")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "big-jpeg.json")
    parser.add_argument("--worker", nargs=2, metavar=("FILE", "KEYWORDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, args.repeat)
        return

    import PIL
    from bench_core import machine  # bench/ is on sys.path when this file is run
    from PIL import features

    info = machine() | {"pillow": PIL.__version__, "libjpeg_turbo": features.version("libjpeg_turbo")}
    info["cpu_flags"] = lscpu_flags()
    print(f"machine: {json.dumps(info)}", flush=True)
    print(
        f"limits: max_pixels {images.DEFAULT_MAX_PIXELS:,} decoded, JPEG header {images.MAX_JPEG_PIXELS:,},"
        f" {images.DEFAULT_MAX_DECODE_BYTES / 2**20:g} MiB, {images.DEFAULT_MAX_DECODE_SECONDS:g} s CPU,"
        f" {images.MAX_JPEG_SCANS} scans, {images.MAX_JPEG_COEFFICIENT_PASSES / 1e9:g} billion coefficient passes;"
        f" min_side {PREPROCESSING.resize} (efficientnet-lite1)\n",
        flush=True,
    )
    rows = []
    header = f"{'case':46} {'KB':>7} {'decoded':>10} {'cpu ms':>8} {'wall ms':>8} {'rise MB':>8} {'est MB':>7}  result"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as folder:
        for name, data, keywords in cases(args.photo):
            row = run_case(name, data, keywords, args.repeat, Path(folder))
            rows.append(row)
            decoded = "x".join(map(str, row.get("decoded", []))) or "-"
            outcome = "refused: " + row["refused"] if "refused" in row else "ok"
            print(
                f"{name:46} {row['bytes'] / 1024:7.0f} {decoded:>10} {row['cpu_s'] * 1000:8.0f}"
                f" {row['wall_s'] * 1000:8.0f} {row['rise_mb']:8.1f} {row['estimate_mb'] or '-':>7}  {outcome}",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": info, "repeat": args.repeat, "cases": rows}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
