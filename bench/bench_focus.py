"""The focus stage (U²-Net-p): cost per photo by resolution and precision, and mask agreement with 320x320.

    .venv/bin/python bench/bench_focus.py [--photos 100] [--rounds 15] [--threads 2] [--no-int8] [--no-agreement]

Times (ms a photo) are taken in interleaved rounds, every configuration once a round, so that other load on
the machine falls on all of them alike; the minimum and the median over the rounds are printed, with the
load average before and after. ``model`` is the ONNX Runtime run alone on a prepared batch; ``stage`` is
``Focus.detect`` on a decoded photo (resize, normalise, run, upscale the mask, box, composite, crop).

Agreement: each configuration's mask (>= 0.5, at the photo's own size) and object box against the fp32
320x320 ones (the U²-Net recipe), on ``--photos`` photos of the clothing data set (shared/datasets). int8 is
ONNX Runtime's static QDQ quantization (uint8 activations, int8 per-channel weights, MinMax ranges from 50
other photos of the set, at each resolution): ``int8`` is the library's recipe (:mod:`lookalike.focus.int8`,
one residual of stage2d kept in float); ``int8all`` quantizes every layer and ``int8dyn`` is dynamic
quantization, both at 192 only, for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lookalike.focus import Focus, u2netp_path  # noqa: E402
from lookalike.focus.weights import symbolic_model  # noqa: E402

DATASET = ROOT.parent / "shared" / "datasets" / "clothing-dataset" / "images"
RESOLUTIONS = (96, 128, 160, 192, 320)


def cpu() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "lscpu not available"
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("Flags")), [])
    avx512 = " ".join(flag for flag in flags if flag.startswith("avx512")) or "none"
    return f"{model}; {os.cpu_count()} CPUs; avx512: {avx512}"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def photos(count: int, offset: int = 0) -> list[Image.Image]:
    files = sorted(DATASET.glob("*.jpg"))
    step = max(1, len(files) // (count + 50))
    chosen = files[offset::step][:count]
    return [Image.open(path).convert("RGB") for path in chosen]


def naive_int8(fp32: Focus, calibration: list[Image.Image], work: Path, dynamic: bool = False) -> Path:
    """For comparison: every layer quantized, static (calibrated at ``fp32``'s resolution) or dynamic."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = work / "sym13.onnx"
    if not source.exists():  # per-channel QDQ needs opset 13; the shipped file is opset 11
        onnx.save(version_converter.convert_version(symbolic_model(fp32.weights), 13), source)
        quant_pre_process(str(source), str(work / "pre.onnx"))
    pre = work / "pre.onnx"
    if dynamic:
        target = work / "dynamic.onnx"
        quantize_dynamic(str(pre), str(target), weight_type=QuantType.QInt8)
        return target
    batch = np.stack([fp32.prepare(image) for image in calibration])
    name = onnx.load(str(pre)).graph.input[0].name

    class Reader:
        def __init__(self) -> None:
            self.chunks = iter([{name: batch[i : i + 5]} for i in range(0, len(batch), 5)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.chunks, None)

    target = work / f"static-all-{fp32.resolution}.onnx"
    quantize_static(
        str(pre),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return target


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def box_iou(a: tuple[int, int, int, int] | None, b: tuple[int, int, int, int] | None) -> float:
    if a is None or b is None:
        return 1.0 if a is b else 0.0
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(float(np.mean(values)), 4),
        "p10": round(float(np.percentile(values, 10)), 4),
        "min": round(float(np.min(values)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument("--no-agreement", action="store_true", help="times only")
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = parser.parse_args()

    print(f"CPU: {cpu()}")
    print(f"before: {load()}")
    weights = u2netp_path()
    if DATASET.is_dir():
        evaluation, calibration = photos(args.photos), photos(50, offset=1)
    else:
        print(f"{DATASET} not found: synthetic photos, timing only")
        rng = np.random.default_rng(0)
        evaluation = [Image.fromarray(rng.integers(0, 255, (533, 400, 3), dtype=np.uint8)) for _ in range(8)]
        calibration = evaluation
    print(f"{len(evaluation)} evaluation photos, {len(calibration)} calibration photos, {args.threads} threads")

    configs: dict[str, Focus] = {}
    with tempfile.TemporaryDirectory(prefix="bench-focus-") as work:
        # A private copy, so the int8 files calibrated here are cached beside it, not in the user's cache.
        (Path(work) / "models").mkdir()
        weights = Path(shutil.copy(weights, Path(work) / "models" / weights.name))

        def bench_calibration(prepare):
            return f"bench-{len(calibration)}", np.stack([prepare(photo) for photo in calibration])

        for resolution in RESOLUTIONS:
            fp32 = Focus(weights, resolution=resolution, threads=args.threads)
            configs[f"fp32-{resolution}"] = fp32
            if not args.no_int8:
                started = time.perf_counter()
                configs[f"int8-{resolution}"] = Focus(
                    weights,
                    resolution=resolution,
                    threads=args.threads,
                    precision="int8",
                    calibration=bench_calibration,
                )
                print(f"quantized at {resolution} in {time.perf_counter() - started:.0f} s", flush=True)
        if not args.no_int8:
            for name, dynamic in (("int8all-192", False), ("int8dyn-192", True)):
                configs[name] = Focus(
                    naive_int8(configs["fp32-192"], calibration, Path(work), dynamic=dynamic),
                    resolution=192,
                    threads=args.threads,
                )

        results: dict[str, dict] = {name: {} for name in configs}
        if DATASET.is_dir() and not args.no_agreement:
            reference = configs["fp32-320"]
            ref_masks = [m >= 0.5 for m in reference.mask(evaluation)]
            ref_boxes = [f.box for f in reference.detect(evaluation)]
            for name, focus in configs.items():
                masks = [m >= 0.5 for m in focus.mask(evaluation)]
                boxes = [f.box for f in focus.detect(evaluation)]
                results[name]["mask_iou"] = summary([iou(a, b) for a, b in zip(masks, ref_masks, strict=True)])
                results[name]["box_iou"] = summary([box_iou(a, b) for a, b in zip(boxes, ref_boxes, strict=True)])
                results[name]["found"] = sum(box is not None for box in boxes)
            same = {}
            for resolution in RESOLUTIONS:
                if f"int8-{resolution}" in configs:
                    a = [m >= 0.5 for m in configs[f"int8-{resolution}"].mask(evaluation)]
                    b = [m >= 0.5 for m in configs[f"fp32-{resolution}"].mask(evaluation)]
                    same[resolution] = summary([iou(x, y) for x, y in zip(a, b, strict=True)])
            if same:
                print("int8 mask IoU vs fp32 at the same resolution:", json.dumps(same))

        timed = evaluation[:16]
        prepared = {name: np.stack([f.prepare(image) for image in timed]) for name, f in configs.items()}
        for focus in configs.values():  # warm up
            focus.predict(prepared[next(n for n, f in configs.items() if f is focus)][: args.batch])
        times: dict[str, dict[str, list[float]]] = {
            name: {"model_b1": [], "model_batch": [], "stage_b1": []} for name in configs
        }
        for round_ in range(args.rounds):
            for name, focus in configs.items():
                if name.startswith("int8dyn") and round_ >= 3:
                    continue  # 10x slower: three rounds say enough
                index = round_ % len(timed)
                one = prepared[name][index : index + 1]
                started = time.perf_counter()
                focus.predict(one)
                times[name]["model_b1"].append((time.perf_counter() - started) * 1000)
                batch = np.roll(prepared[name], -index, axis=0)[: args.batch]
                started = time.perf_counter()
                focus.predict(batch)
                times[name]["model_batch"].append((time.perf_counter() - started) * 1000 / len(batch))
                started = time.perf_counter()
                focus.detect([timed[index]])
                times[name]["stage_b1"].append((time.perf_counter() - started) * 1000)
        for name, kinds in times.items():
            for kind, values in kinds.items():
                results[name][kind] = {"min": round(min(values), 1), "median": round(statistics.median(values), 1)}

    print(f"after: {load()}")
    header = f"{'config':<12} {'model b1 ms':>14} {f'model b{args.batch} ms/ph':>15} {'stage b1 ms':>14}"
    print(header + f" {'mask IoU mean/p10/min':>24} {'box IoU mean/p10/min':>24} found")
    for name, result in results.items():
        cells = [f"{result[k]['min']:6.1f}/{result[k]['median']:6.1f}" for k in ("model_b1", "model_batch", "stage_b1")]
        line = f"{name:<12} {cells[0]:>14} {cells[1]:>15} {cells[2]:>14}"
        if "mask_iou" in result:
            m, b = result["mask_iou"], result["box_iou"]
            line += f" {m['mean']:.3f}/{m['p10']:.3f}/{m['min']:.3f}".rjust(25)
            line += f" {b['mean']:.3f}/{b['p10']:.3f}/{b['min']:.3f}".rjust(25) + f" {result['found']}"
        print(line)
    print("(times: min/median over rounds)")
    if args.out:
        args.out.write_text(json.dumps({"cpu": cpu(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
