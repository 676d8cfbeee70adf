"""The embedder: images in, one float32 vector per image out, through ONNX Runtime.

Every model, whatever framework it came from, ends up as an ONNX graph, so querying never imports torch.
Built-in models are exported with their normalisation folded into the graph and take uint8 NHWC input:
Python then does no float arithmetic on pixels at all.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from lookalike.embed import providers
from lookalike.errors import ModelError
from lookalike.images import resize_and_crop

InputFormat = Literal["uint8_nhwc", "float_nchw"]


@dataclass(frozen=True)
class Preprocessing:
    """How a picture becomes model input: shorter side to ``resize``, centre crop ``crop``.

    ``mean``/``std`` are on the 0..255 scale. For ``uint8_nhwc`` graphs they are already inside the graph and
    recorded here only so an index can say exactly how its vectors were made.
    """

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    input_format: InputFormat = "uint8_nhwc"


@dataclass
class Embedder:
    """A named ONNX image model that turns images into ``dim``-d feature vectors."""

    name: str
    onnx_path: Path
    dim: int
    preprocessing: Preprocessing
    threads: int = 0
    feature_output: str = "features"
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth recording with an index (weights file hash, source)."""
    focus: Any = None
    """An optional :class:`lookalike.focus.Focus` run on every picture before the resize and crop (the product
    on white, cropped to it), for catalogue and query images alike; recorded in :meth:`descriptor`."""
    projection: Any = None
    """An optional :class:`lookalike.adapt.Projection` learned from the catalogue's labels (``lookalike
    adapt``), applied to every vector this model makes, catalogue and query alike; recorded in
    :meth:`descriptor`."""
    providers: tuple[str, ...] | None = None
    """ONNX Runtime execution providers by preference (``cuda``, ``openvino``, ...; CPU is always the
    fallback); None: the ``LOOKALIKE_PROVIDERS`` setting. See :mod:`lookalike.embed.providers`."""

    def __post_init__(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ORT threads otherwise spin for work, stealing the cores that decode the next batch
        # (measured on 2 cores: ingest 101 -> 114 images/s with HNSW, 109 -> 145 with an exact index).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.providers is None:
            from lookalike.config import get_settings

            self.providers = tuple(get_settings().providers)
        chosen = providers.resolve(self.providers)
        try:
            self._session = ort.InferenceSession(str(self.onnx_path), options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load ONNX model {self.onnx_path}: {exc}") from exc
        self._input_name = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]
        if self.feature_output not in self._outputs:
            self.feature_output = self._outputs[0]

    def descriptor(self) -> dict[str, Any]:
        """What an index records about the model, and compares on every add and query."""
        described = {
            "model": self.name,
            "dim": self.dim,
            "preprocessing": asdict(self.preprocessing),
            **self.extra,
        }
        if self.focus is not None:  # absent, not null, without focus: indexes made before it stay identical
            described["focus"] = self.focus.descriptor()
        if self.projection is not None:  # likewise absent until an index is adapted
            described["adaptation"] = self.projection.record()
        return described

    def with_focus(self, focus: Any) -> Embedder:
        """This model with ``focus`` before it (or without any, for None), sharing the loaded session."""
        focused = copy.copy(self)
        focused.focus = focus
        return focused

    def with_projection(self, projection: Any) -> Embedder:
        """This model with ``projection`` after it (or without any, for None), sharing the loaded session."""
        projected = copy.copy(self)
        projected.projection = projection
        return projected

    @property
    def decode_min_side(self) -> int:
        """The shorter side a picture must keep when decoded (JPEGs are decoded at 1/2, 1/4 or 1/8 where that
        still leaves this much): the model's resize, or twice it with a focus stage, whose crop of the product
        is then resized to the model's input and must not be upscaled from a thumbnail."""
        return self.preprocessing.resize * (2 if self.focus is not None else 1)

    def prepare(self, image: Image.Image) -> np.ndarray:
        """One RGB image to a (crop, crop, 3) uint8 array: safe to run in worker threads; cheap unless a focus
        stage runs first (a salient-object network on the whole picture)."""
        return self.prepare_with_box(image)[0]

    def prepare_with_box(self, image: Image.Image) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
        """:meth:`prepare`, and the box (pixels of ``image``) where the focus stage found the object: None
        without a focus stage or when nothing stood out."""
        box = None
        if self.focus is not None:
            focused = self.focus.focus(image)
            image, box = focused.image, focused.box
        return resize_and_crop(image, self.preprocessing.resize, self.preprocessing.crop), box

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        """A (n, crop, crop, 3) uint8 batch to (n, dim) float32 features."""
        if batch.ndim != 4 or batch.dtype != np.uint8:
            raise ModelError(f"expected a (n, h, w, 3) uint8 batch, got {batch.dtype} {batch.shape}")
        (features,) = self._session.run([self.feature_output], {self._input_name: self._to_input(batch)})
        vectors = np.ascontiguousarray(features.reshape(len(batch), -1), dtype=np.float32)
        return vectors if self.projection is None else self.projection.apply(vectors)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB images to (n, dim) float32 features."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_prepared(np.stack([self.prepare(image) for image in images]))

    def classify(self, batch: np.ndarray) -> np.ndarray:
        """ImageNet logits for a prepared batch, where the graph kept the classifier (to check the weights)."""
        if "logits" not in self._outputs:
            raise ModelError(f"model {self.name} has no classifier head")
        (logits,) = self._session.run(["logits"], {self._input_name: self._to_input(batch)})
        return logits

    def _to_input(self, batch: np.ndarray) -> np.ndarray:
        if self.preprocessing.input_format == "uint8_nhwc":
            return batch
        mean = np.asarray(self.preprocessing.mean, dtype=np.float32)
        std = np.asarray(self.preprocessing.std, dtype=np.float32)
        return np.ascontiguousarray(((batch.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2))
