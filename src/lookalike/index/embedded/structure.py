"""The FAISS search structure of an embedded index: its factory, training, checkpoint file and memory map.

The structure follows ``IndexSettings``: float32 ``IndexFlat`` or ``IndexHNSWFlat`` (the defaults), or a *lossy*
one built with FAISS's index factory (fp16, 8-bit scalar or product quantization; HNSW or IVF; an optional PCA
in front), always wrapped in ``IndexRefineFlat`` so that the float vectors travel with it in the one checkpoint
file (``IndexRefine`` over a scalar quantizer when ``rerank_encoding`` says so). Structures that must be
trained start as a float ``IndexFlat`` ("staging") and are trained at the first checkpoint that finds
:func:`training_size` live vectors. The checkpoint (``vectors.faiss``, an ``IndexIDMap`` whose ids are vids)
is written atomically and opened memory-mapped; the first write after opening copies it into memory.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

import faiss
import numpy as np

from lookalike.index.embedded.state import EmbeddedState
from lookalike.index.settings import IndexSettings

FAISS_NAME = "vectors.faiss"
COMPACT_DEAD_FRACTION = 0.25

TRAIN_SAMPLE = 100_000
"""At most this many vectors train a structure: FAISS's k-means uses at most 256 per IVF cell anyway, and PQ,
SQ ranges and PCA are stable well before (training on 100,000 1280-d vectors: ~1 min on 2 cores for IVF1024)."""

ADD_CHUNK = 50_000

MMAP_FLAGS = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY

STORE_QUANTIZERS = {"fp16": faiss.ScalarQuantizer.QT_fp16, "sq8": faiss.ScalarQuantizer.QT_8bit}
"""The re-scoring store's codes for ``rerank_encoding`` ("none" is ``IndexRefineFlat``'s float store)."""

FACTORY_CODES = {"none": "Flat", "fp16": "SQfp16", "sq8": "SQ8"}
"""FAISS index-factory names of the encodings (PQ's depends on its settings: see ``factory_string``)."""


def factory_string(settings: IndexSettings) -> str:
    """The FAISS index-factory description of a lossy structure (inside its ``IndexRefineFlat``)."""
    code = FACTORY_CODES | {"pq": f"PQ{settings.pq_m}x{settings.pq_bits}"}
    parts = [f"PCA{settings.reduce_dim}"] if settings.reduce_dim else []
    if settings.kind == "exact":
        parts.append(code[settings.encoding])
    elif settings.kind == "hnsw":
        parts.append(f"HNSW{settings.hnsw_m}" + ("" if settings.encoding == "none" else f",{code[settings.encoding]}"))
    else:
        parts.append(f"IVF{settings.ivf_lists},{code[settings.encoding]}")
    return ",".join(parts)


def structure_name(settings: IndexSettings) -> str:
    """How ``lookalike info`` names a lossy structure: the refine wrapper, its structure and its store."""
    if settings.rerank_encoding == "none":
        return f"IndexRefineFlat({factory_string(settings)})"
    return f"IndexRefine({factory_string(settings)}; store {FACTORY_CODES[settings.rerank_encoding]})"


def training_size(settings: IndexSettings) -> int:
    """Live vectors needed before training: FAISS wants >= 39 points per k-means centroid (IVF cells, PQ
    codewords); SQ8 ranges and PCA need a fair sample of the catalogue. 0 = nothing to train."""
    need = 0
    if settings.kind == "ivf":
        need = max(need, 39 * settings.ivf_lists)
    if settings.encoding == "pq":
        need = max(need, 39 * 2**settings.pq_bits)
    if settings.encoding == "sq8":
        need = max(need, 1000)
    if settings.reduce_dim:
        need = max(need, 4 * settings.reduce_dim)
    return need


QUERY_TIME_SETTINGS = ("ef_search", "nprobe", "rerank")
"""Settings read at query time only: ``rebuild`` changes them without touching the structure."""


def structure_of(settings: IndexSettings) -> dict[str, Any]:
    """The settings that make the FAISS structure what it is (all but the query-time ones)."""
    return {key: value for key, value in asdict(settings).items() if key not in QUERY_TIME_SETTINGS}


def _core(index: faiss.Index) -> faiss.Index:
    """The structure under the refine and PCA wrappers (where HNSW or IVF parameters live)."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexRefine):
        index = faiss.downcast_index(index.base_index)
    if isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return index


def _store_kind(index: faiss.Index) -> str:
    """What a refine wrapper re-scores with ("flat", or the scalar quantizer's type), "" for other indexes."""
    index = faiss.downcast_index(index)
    if not isinstance(index, faiss.IndexRefine):
        return ""
    store = faiss.downcast_index(index.refine_index)
    return f"sq{store.sq.qtype}" if isinstance(store, faiss.IndexScalarQuantizer) else "flat"


class StructureMixin(EmbeddedState):
    """The FAISS structure of :class:`EmbeddedIndex`: ``self._faiss`` and its owner, ``self._mapped``,
    ``self._stages``; ``save`` writes its checkpoint."""

    def _new_faiss(self) -> faiss.Index:
        """The (empty, possibly untrained) search structure the settings describe."""
        settings = self.settings
        if not settings.is_lossy():
            metric = faiss.METRIC_INNER_PRODUCT if settings.metric == "cosine" else faiss.METRIC_L2
            if settings.kind == "exact":
                return faiss.IndexFlat(settings.dim, metric)
            index = faiss.IndexHNSWFlat(settings.dim, settings.hnsw_m, metric)
            index.hnsw.efConstruction = settings.ef_construction
            index.hnsw.efSearch = settings.ef_search
            return index
        # Lossy structures compare by L2, also for cosine (over unit vectors, where it orders like the inner
        # product): PCA centres the data and k-means assumes L2, which the inner product would not survive.
        structure = faiss.index_factory(settings.dim, factory_string(settings), faiss.METRIC_L2)
        if settings.rerank_encoding == "none":
            refined = faiss.IndexRefineFlat(structure)
        else:
            quantizer = STORE_QUANTIZERS[settings.rerank_encoding]
            store = faiss.IndexScalarQuantizer(settings.dim, quantizer, faiss.METRIC_L2)
            refined = faiss.IndexRefine(structure, store)  # FAISS's Python layer keeps both alive with it
        self._configure(refined)
        return refined

    def _configure(self, index: faiss.Index) -> None:
        core = _core(index)
        if isinstance(core, faiss.IndexHNSW):
            core.hnsw.efConstruction = self.settings.ef_construction
            core.hnsw.efSearch = self.settings.ef_search
        if isinstance(core, faiss.IndexIVF):
            core.nprobe = self.settings.nprobe

    def _staging(self) -> bool:
        """Whether the structure still waits for training (and is a float IndexFlat meanwhile)."""
        return self._stages and not isinstance(self._faiss, faiss.IndexRefine)

    def _reset_faiss(self) -> None:
        # Only lossy structures need training, and they compare by L2: so does their staging IndexFlat.
        fresh = faiss.IndexFlat(self.settings.dim, faiss.METRIC_L2) if self._stages else self._new_faiss()
        self._faiss, self._faiss_owner, self._mapped = fresh, None, False
        self._vids, self._live = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        self._pending_vids: list[int] = []
        self._pending_vectors: list[np.ndarray] = []
        self._pending_cache: tuple[int, np.ndarray] | None = None  # (how many, the pending vectors as FAISS has them)

    def _load_checkpoint(self) -> None:
        checkpoint = self.path / FAISS_NAME
        if checkpoint.is_file():
            try:
                # an IndexIDMap (IndexIDMap2 before) that owns the inner index
                wrapper = faiss.read_index(str(checkpoint), MMAP_FLAGS if self._use_mmap else 0)
                wrapped = isinstance(wrapper, faiss.IndexIDMap | faiss.IndexIDMap2)
                inner = faiss.downcast_index(wrapper.index) if wrapped else None
                if inner is None or not self._is_ours(inner):
                    raise ValueError(f"{checkpoint} is not this index's checkpoint")
                self._vids = faiss.vector_to_array(wrapper.id_map).astype(np.int64)
                self._faiss = inner
                self._faiss_owner = wrapper  # keeps the inner index alive exactly as long as we use it
                self._mapped = self._use_mmap
                self._configure(inner)
            except (RuntimeError, ValueError):
                self._reset_faiss()  # unreadable or foreign checkpoint: rebuilt from SQLite below
        live_vids = np.fromiter((r[0] for r in self._db.execute("SELECT vid FROM items")), dtype=np.int64)
        self._live = np.isin(self._vids, live_vids)
        missing = np.setdiff1d(live_vids, self._vids, assume_unique=True)
        if self._vids.size and missing.size and missing.min() < self._vids.max():
            # Vids only grow, so anything older than the checkpoint's newest must already be in it.
            self._reset_faiss()
            missing = np.sort(live_vids)
        for chunk in np.array_split(missing, max(1, len(missing) // 10_000)):
            if chunk.size:
                rows = self._db.execute(
                    f"SELECT vid, vector FROM items WHERE vid IN ({','.join('?' * len(chunk))}) ORDER BY vid",
                    [int(v) for v in chunk],
                ).fetchall()
                self._append([r[0] for r in rows], np.stack([self._from_blob(r[1]) for r in rows]))
        self._dirty = bool(missing.size)

    def _is_ours(self, inner: faiss.Index) -> bool:
        """Whether a checkpoint's structure is what these settings build (or their untrained staging)."""
        if inner.d != self.settings.dim:
            return False
        # isinstance, not type equality: FAISS reads an IndexFlat back as IndexFlatIP or IndexFlatL2.
        if self._stages and isinstance(inner, faiss.IndexFlat):
            return inner.metric_type == faiss.METRIC_L2
        expected = self._new_faiss()
        return (
            isinstance(inner, type(expected))
            and isinstance(_core(inner), type(_core(expected)))
            and inner.metric_type == expected.metric_type
            and _store_kind(inner) == _store_kind(expected)
        )

    def _make_writable(self) -> None:
        """FAISS aborts the process on a write to a mapped structure: copy the checkpoint into memory first."""
        if not self._mapped:
            return
        wrapper = faiss.read_index(str(self.path / FAISS_NAME))
        inner = faiss.downcast_index(wrapper.index)
        ids = faiss.vector_to_array(wrapper.id_map)
        if not (inner.ntotal == self._faiss.ntotal and np.array_equal(ids, self._vids) and self._is_ours(inner)):
            # Another process replaced the checkpoint since we mapped it (a server beside an ingest): copy the
            # mapping itself into memory (FAISS serialises from it; ~14 ms per 5,000 64-d vectors) rather
            # than rebuild the whole graph from SQLite while every query waits.
            wrapper = faiss.deserialize_index(faiss.serialize_index(self._faiss_owner))
            inner = faiss.downcast_index(wrapper.index)
        self._faiss, self._faiss_owner, self._mapped = inner, wrapper, False
        self._configure(inner)

    def _float_store(self) -> faiss.Index:
        """The vectors by position: the flat index itself, HNSW's storage, or the refine store (float, or the
        codes of a ``rerank_encoding``)."""
        index = self._faiss
        if isinstance(index, faiss.IndexRefine):
            return faiss.downcast_index(index.refine_index)
        if isinstance(index, faiss.IndexHNSW):
            return faiss.downcast_index(index.storage)
        return index

    def save(self) -> None:
        """Write the FAISS checkpoint atomically (SQLite is already durable); compact first if worthwhile."""
        with self._lock:
            self._flush_pending()
            self._train_if_ready()
            dead = int((~self._live).sum())
            if dead and dead > COMPACT_DEAD_FRACTION * max(len(self._live), 1):
                self.compact()
            if not self._dirty and (self.path / FAISS_NAME).exists():
                return
            self._trim_tombstones()
            # IndexIDMap2 only wraps an empty index, so wrap a blank one and swap ours in: one file, one rename.
            # (IndexIDMap, not IndexIDMap2: the reverse map it would build on every open is never used.)
            wrapper = faiss.IndexIDMap(faiss.IndexFlat(self.settings.dim))
            # FAISS's SWIG layer hands ownership of an index assigned to a field over to the C++ side: take
            # it back, or the structure is never freed (every compacting save leaked the previous one).
            owned = self._faiss.this.own()
            wrapper.index, wrapper.ntotal = self._faiss, self._faiss.ntotal
            self._faiss.this.own(owned)
            faiss.copy_array_to_vector(self._vids, wrapper.id_map)
            tmp = self.path / (FAISS_NAME + ".tmp")
            faiss.write_index(wrapper, str(tmp))
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, self.path / FAISS_NAME)
            self._dirty = False

    def compact(self) -> None:
        """Rebuild the FAISS structure from the live vectors in SQLite, dropping dead ones."""
        with self._lock:
            self._reset_faiss()  # pending vectors are in SQLite, so the rebuild includes them
            for batch in self._iter_vectors():
                self._append([vid for vid, _ in batch], np.stack([vector for _, vector in batch]))
            self._train_if_ready()
            self._dirty = True

    def _train_if_ready(self) -> None:
        """Staging float vectors -> the trained structure, once there are enough live ones to train on."""
        if not self._staging() or int(self._live.sum()) < training_size(self.settings):
            return
        staging, total = self._faiss, int(self._faiss.ntotal)
        live = np.flatnonzero(self._live)
        sample = np.sort(np.random.default_rng(0).choice(live, size=min(TRAIN_SAMPLE, live.size), replace=False))
        structure = self._new_faiss()
        structure.train(staging.reconstruct_batch(sample))  # already unit vectors for cosine
        base = faiss.downcast_index(structure.base_index)
        for start in range(0, total, ADD_CHUNK):
            base.add(staging.reconstruct_n(start, min(ADD_CHUNK, total - start)))
        if self._faiss_owner is None and not self._mapped and self.settings.rerank_encoding == "none":
            # The staging vectors become the float store as they are: no second copy of 4·d bytes a vector
            # (5 GB at a million). The structure owns (and frees) it from now on.
            staging.this.disown()
            structure.refine_index = staging
        else:  # staging belongs to a checkpoint's wrapper (or its memory map), or the store encodes: copy it
            store = faiss.downcast_index(structure.refine_index)
            for start in range(0, total, ADD_CHUNK):
                store.add(staging.reconstruct_n(start, min(ADD_CHUNK, total - start)))
        structure.ntotal = base.ntotal
        self._faiss, self._faiss_owner, self._mapped = structure, None, False
        self._dirty = True
