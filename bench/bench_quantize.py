"""fp32 against int8 EfficientNet-Lite0 on the clothing catalogue: speed of the model step and of the whole ingest,
retrieval quality, and how far the model step is from what the CPU can do.

Both models run in the same process, in turns (fp32, int8, fp32, int8, ...), so that load from anything else on
the machine falls on both; every figure is the median of several repetitions, with the min and max beside it.

    python bench/bench_quantize.py [--quick] [--reps 7] [--ingest-reps 3] [--out bench/results/quantize.json]

The int8 model is built on first use (calibrated on 200 catalogue images, see lookalike.embed.efficientnet_int8);
the build time is reported when this run did it.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_core import NOT_CLASSES, Subset, machine  # bench/ is on sys.path when this file is run

from lookalike.catalog import open_or_create_catalog
from lookalike.embed import Embedder, load_embedder
from lookalike.evaluate import same_label_precision
from lookalike.images import load_image, resize_and_crop
from lookalike.ingest import ingest
from lookalike.sources.datasets import clothing_dataset

MODELS = ("efficientnet-lite0", "efficientnet-lite0-int8")
SHORT = {"efficientnet-lite0": "fp32", "efficientnet-lite0-int8": "int8"}
BATCH = 32
THREADS = 2


def spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def prepared_batch(source: Subset, size: int) -> np.ndarray:
    items = random.Random(0).sample(source.items, size)
    return np.stack([resize_and_crop(load_image(item.read(), min_side=256), 256, 224) for item in items])


def model_throughput(embedders: dict[str, Embedder], batch: np.ndarray, reps: int, batches: int) -> dict[str, Any]:
    """Images/s of the model step alone on prepared uint8 batches of 32, models in turns, ``reps`` times."""
    for embedder in embedders.values():
        embedder.embed_prepared(batch)  # warm-up
    runs: dict[str, list[float]] = {name: [] for name in embedders}
    for _ in range(reps):
        for name, embedder in embedders.items():
            started = time.perf_counter()
            for _ in range(batches):
                embedder.embed_prepared(batch)
            runs[name].append(batches * len(batch) / (time.perf_counter() - started))
    return {name: spread(values) for name, values in runs.items()}


def single_latency(embedders: dict[str, Embedder], batch: np.ndarray, rounds: int, per_round: int) -> dict[str, Any]:
    """Milliseconds for one prepared image; p50/p90 over all calls, and the spread of per-round medians."""
    calls: dict[str, list[float]] = {name: [] for name in embedders}
    medians: dict[str, list[float]] = {name: [] for name in embedders}
    for embedder in embedders.values():
        for image in batch[:5]:
            embedder.embed_prepared(image[None])
    for _ in range(rounds):
        for name, embedder in embedders.items():
            this_round = []
            for image in batch[:per_round]:
                started = time.perf_counter()
                embedder.embed_prepared(image[None])
                this_round.append((time.perf_counter() - started) * 1000)
            calls[name] += this_round
            medians[name].append(statistics.median(this_round))
    return {
        name: {
            "p50_ms": float(np.percentile(calls[name], 50)),
            "p90_ms": float(np.percentile(calls[name], 90)),
            "round_medians_ms": spread(medians[name]),
        }
        for name in embedders
    }


def ingest_runs(source: Subset, reps: int, workers: int, workdir: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """Full ingest into a fresh embedded index, as in bench_core, models in turns; keeps the last index of each."""
    runs: dict[str, list[float]] = {name: [] for name in MODELS}
    last: dict[str, Path] = {}
    for rep in range(reps):
        for name in MODELS:
            where = workdir / f"{SHORT[name]}-{rep}"
            catalog = open_or_create_catalog(where, name, metric="cosine", kind="hnsw")
            report = ingest(source, catalog.index, catalog.embedder, workers=workers, progress=False)
            catalog.close()
            if report.failed:
                print(f"  {name}: {len(report.failed)} images failed", flush=True)
            runs[name].append(report.rate)
            print(f"  ingest {SHORT[name]} run {rep + 1}: {report.rate:.1f} images/s", flush=True)
            if name in last:
                shutil.rmtree(last[name], ignore_errors=True)
            last[name] = where
    return {name: spread(values) for name, values in runs.items()}, last


def quality(indexes: dict[str, Path]) -> dict[str, Any]:
    """Same-label precision (exact cosine) per model, and the cosine between fp32 and int8 vectors of one image."""
    out: dict[str, Any] = {}
    vectors: dict[str, dict[str, np.ndarray]] = {}
    for name, where in indexes.items():
        catalog = open_or_create_catalog(where, name)
        everything = same_label_precision(catalog.index, (1, 10), "label", exact=True)
        classes = same_label_precision(catalog.index, (1, 10), "label", exact=True, ignore_labels=NOT_CLASSES)
        out[name] = {
            "precision@1_all_labels": everything.precision[1],
            "precision@10_all_labels": everything.precision[10],
            "queries_all_labels": everything.queries,
            "precision@1_classes": classes.precision[1],
            "precision@10_classes": classes.precision[10],
            "queries_classes": classes.queries,
        }
        batches = catalog.index.iter_items(with_vectors=True)
        vectors[name] = {item.id: item.vector for batch in batches for item in batch}
        catalog.close()
    fp32, int8 = (vectors[name] for name in MODELS)
    ids = sorted(fp32.keys() & int8.keys())
    a = np.stack([fp32[i] for i in ids]).astype(np.float64)
    b = np.stack([int8[i] for i in ids]).astype(np.float64)
    cosines = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    out["cosine_fp32_int8"] = {
        "mean": float(cosines.mean()),
        "p5": float(np.percentile(cosines, 5)),
        "min": float(cosines.min()),
        "images": len(ids),
    }
    return out


def graph_macs(onnx_path: Path, workdir: Path) -> dict[str, float]:
    """Multiply-accumulates per 224x224 image, counted from the graph's Conv and Gemm nodes.

    ONNX Runtime's basic optimisations first fold the exported TF-style padding (computed at run time from
    constants), so that ONNX shape inference can follow the shapes through the graph.
    """
    import onnx
    import onnxruntime as ort
    from onnx import shape_inference

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(workdir / "basic.onnx")
    ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    model = onnx.load(options.optimized_model_filepath)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, (1, 224, 224, 3), strict=True):
        dim.Clear()
        dim.dim_value = value
    model = shape_inference.infer_shapes(model)
    shapes = {
        value.name: [d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in list(model.graph.value_info) + list(model.graph.output)
    }
    weights = {tensor.name: list(tensor.dims) for tensor in model.graph.initializer}
    dense = depthwise = head = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            out, (c_out, c_in, kh, kw) = shapes[node.output[0]], weights[node.input[1]]
            macs = out[2] * out[3] * c_out * c_in * kh * kw
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if group > 1:
                depthwise += macs
            else:
                dense += macs
        elif node.op_type == "Gemm":
            head += int(np.prod(weights[node.input[1]]))
    if not dense or any(0 in shape for shape in shapes.values()):
        raise RuntimeError(f"could not infer the shapes of {onnx_path}")
    return {"dense_conv": dense, "depthwise_conv": depthwise, "features": dense + depthwise, "classifier": head}


def gemm_ceiling(reps: int, size: int = 2048, seconds: float = 0.5) -> dict[str, Any]:
    """GMAC/s of a big square matrix product in ONNX Runtime on THREADS threads: fp32 MatMul, u8s8 MatMulInteger.

    What these kernels (the MLAS GEMMs the convolutions use too) do at best on this machine: a practical ceiling.
    The best run is the ceiling; load from elsewhere only ever lowers a run.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graphs = {
        "fp32": helper.make_graph(
            [helper.make_node("MatMul", ["a", "b"], ["c"])],
            "fp32",
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size])],
            [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
            [numpy_helper.from_array(rng.standard_normal((size, size), dtype=np.float32), "b")],
        ),
        "int8": helper.make_graph(
            [helper.make_node("MatMulInteger", ["a", "b", "za", "zb"], ["c"])],
            "int8",
            [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])],
            [helper.make_tensor_value_info("c", TensorProto.INT32, [size, size])],
            [
                numpy_helper.from_array(rng.integers(-127, 128, (size, size), dtype=np.int8), "b"),
                numpy_helper.from_array(np.array(128, dtype=np.uint8), "za"),
                numpy_helper.from_array(np.array(0, dtype=np.int8), "zb"),
            ],
        ),
    }
    inputs = {
        "fp32": rng.standard_normal((size, size), dtype=np.float32),
        "int8": rng.integers(0, 256, (size, size), dtype=np.uint8),
    }
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    runs: dict[str, list[float]] = {kind: [] for kind in graphs}
    sessions = {}
    for kind, graph in graphs.items():
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        sessions[kind] = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        sessions[kind].run(None, {"a": inputs[kind]})
    for _ in range(reps):
        for kind, session in sessions.items():
            started, count = time.perf_counter(), 0
            while time.perf_counter() - started < seconds:
                session.run(None, {"a": inputs[kind]})
                count += 1
            runs[kind].append(count * size**3 / (time.perf_counter() - started) / 1e9)
    return {kind: spread(values) for kind, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 images instead of the whole catalogue")
    parser.add_argument("--reps", type=int, default=7, help="repetitions of the model-step measurements")
    parser.add_argument("--ingest-reps", type=int, default=3, help="full ingests per model")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="bench/results/quantize.json")
    args = parser.parse_args()

    source = Subset(clothing_dataset(fallback=False), 1000 if args.quick else None)
    info = machine()
    print(f"catalogue: {len(source)} images; machine: {info}", flush=True)
    results: dict[str, Any] = {"machine": info, "images": len(source), "quick": args.quick, "threads": THREADS}

    from lookalike.config import get_settings

    models_dir = get_settings().cache / "models"
    had_int8 = any(models_dir.glob("efficientnet-lite0-*-int8-*.onnx"))
    embedders: dict[str, Embedder] = {}
    for name in MODELS:
        started = time.perf_counter()
        embedders[name] = load_embedder(name, threads=THREADS)
        if name.endswith("int8") and not had_int8:
            results["int8_build_seconds"] = time.perf_counter() - started
    results["int8_descriptor"] = embedders[MODELS[1]].descriptor()
    results["model_files_mib"] = {
        SHORT[name]: embedder.onnx_path.stat().st_size / 2**20 for name, embedder in embedders.items()
    }

    batch = prepared_batch(source, BATCH)
    print("model step: batches of 32 ...", flush=True)
    throughput = model_throughput(embedders, batch, args.reps, batches=10)
    print("model step: single images ...", flush=True)
    latency = single_latency(embedders, batch, rounds=args.reps, per_round=BATCH)
    print("GEMM ceiling ...", flush=True)
    ceiling = gemm_ceiling(args.reps)

    workdir = Path(tempfile.mkdtemp(prefix="lookalike-bench-quantize-"))
    try:
        macs = graph_macs(embedders[MODELS[0]].onnx_path, workdir)
        print("ingest ...", flush=True)
        ingest_rates, indexes = ingest_runs(source, args.ingest_reps, args.workers, workdir)
        print("quality ...", flush=True)
        measured = quality(indexes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    gmacs = macs["features"] / 1e9
    for name in MODELS:
        kind = SHORT[name]
        rate = throughput[name]["median"]
        results[kind] = {
            "model_only_images_per_s": throughput[name],
            "single_image_latency": latency[name],
            "ingest_images_per_s": ingest_rates[name],
            **measured[name],
            "achieved_gmac_per_s": rate * gmacs,
            "achieved_gflop_per_s": 2 * rate * gmacs,
            "share_of_gemm_ceiling": rate * gmacs / ceiling[kind]["max"],
        }
    results["cosine_fp32_int8"] = measured["cosine_fp32_int8"]
    results["macs_per_image"] = macs
    results["gemm_ceiling_gmac_per_s"] = ceiling
    fp32, int8 = results["fp32"], results["int8"]
    results["speedup"] = {
        "model_only": int8["model_only_images_per_s"]["median"] / fp32["model_only_images_per_s"]["median"],
        "single_image_latency": fp32["single_image_latency"]["p50_ms"] / int8["single_image_latency"]["p50_ms"],
        "ingest": int8["ingest_images_per_s"]["median"] / fp32["ingest_images_per_s"]["median"],
    }
    results["precision@10_drop"] = {
        "all_labels": fp32["precision@10_all_labels"] - int8["precision@10_all_labels"],
        "classes": fp32["precision@10_classes"] - int8["precision@10_classes"],
    }

    print_table(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {out}")


def print_table(results: dict[str, Any]) -> None:
    def med(value: dict[str, Any], digits: int = 1) -> str:
        return f"{value['median']:.{digits}f} [{value['min']:.{digits}f}-{value['max']:.{digits}f}]"

    fp32, int8 = results["fp32"], results["int8"]
    both = (fp32, int8)
    print(f"\nmachine: {results['machine']}")
    print(f"catalogue: {results['images']} images; {results['threads']} threads; median [min-max]\n")
    rows = [
        ("model step, images/s (batch 32)", med(fp32["model_only_images_per_s"]), med(int8["model_only_images_per_s"])),
        (
            "single image, ms p50 / p90",
            f"{fp32['single_image_latency']['p50_ms']:.2f} / {fp32['single_image_latency']['p90_ms']:.2f}",
            f"{int8['single_image_latency']['p50_ms']:.2f} / {int8['single_image_latency']['p90_ms']:.2f}",
        ),
        ("single image, round medians ms", *(med(m["single_image_latency"]["round_medians_ms"], 2) for m in both)),
        ("ingest, images/s", med(fp32["ingest_images_per_s"]), med(int8["ingest_images_per_s"])),
    ]
    for key in ("precision@1_all_labels", "precision@10_all_labels", "precision@1_classes", "precision@10_classes"):
        rows.append((key + " (exact)", f"{fp32[key]:.4f}", f"{int8[key]:.4f}"))
    achieved = (f"{m['achieved_gmac_per_s']:.0f} ({m['achieved_gflop_per_s']:.0f})" for m in both)
    rows.append(("achieved GMAC/s (GFLOP/s)", *achieved))
    ceiling = results["gemm_ceiling_gmac_per_s"]
    rows.append(("ORT 2048^3 GEMM, GMAC/s", med(ceiling["fp32"], 0), med(ceiling["int8"], 0)))
    rows.append(("model step / best GEMM run", *(f"{m['share_of_gemm_ceiling']:.0%}" for m in both)))
    print(f"{'measure':<36}{'fp32':>26}{'int8':>26}")
    for label, a, b in rows:
        print(f"{label:<36}{a:>26}{b:>26}")
    cos = results["cosine_fp32_int8"]
    macs = results["macs_per_image"]
    speed = results["speedup"]
    print(
        f"\ncosine(fp32, int8) over {cos['images']} images: mean {cos['mean']:.4f}, p5 {cos['p5']:.4f}, "
        f"min {cos['min']:.4f}"
    )
    print(
        f"precision@10 drop: {results['precision@10_drop']['all_labels']:+.4f} (all labels), "
        f"{results['precision@10_drop']['classes']:+.4f} (classes)"
    )
    print(
        f"speed-up int8/fp32: model step {speed['model_only']:.2f}x, "
        f"single image {speed['single_image_latency']:.2f}x, ingest {speed['ingest']:.2f}x"
    )
    print(
        f"graph: {macs['features'] / 1e6:.0f} M multiply-adds per image to the features "
        f"({macs['dense_conv'] / 1e6:.0f} M dense conv, {macs['depthwise_conv'] / 1e6:.0f} M depthwise), "
        f"i.e. {2 * macs['features'] / 1e9:.2f} GFLOP"
    )
    if "int8_build_seconds" in results:
        print(f"int8 model built in this run: {results['int8_build_seconds']:.1f} s")
    print(f"int8 descriptor: {results['int8_descriptor']}")


if __name__ == "__main__":
    sys.exit(main())
