"""Copy an index to another backend (vectors and metadata), without re-embedding anything.

Resumable: items already in the target with the same content hash are skipped, so an interrupted
migration is finished by running it again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from tqdm import tqdm

from lookalike.errors import ModelMismatchError
from lookalike.index import VectorIndex
from lookalike.index.backends import IndexTarget, create_index, index_exists, open_index


@dataclass
class MigrateReport:
    copied: int = 0
    unchanged: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return f"{self.copied} copied, {self.unchanged} already there, in {self.seconds:.1f} s"


def open_target_like(source: VectorIndex, target: IndexTarget) -> VectorIndex:
    """The target index, created with the source's settings, or opened if it exists and matches."""
    if not index_exists(target):
        return create_index(target, source.settings)
    opened = open_index(target)
    mine, theirs = source.settings, opened.settings
    same = (mine.dim, mine.metric, json.dumps(dict(mine.embedding), sort_keys=True)) == (
        theirs.dim,
        theirs.metric,
        json.dumps(dict(theirs.embedding), sort_keys=True),
    )
    if not same:
        opened.close()
        raise ModelMismatchError(
            f"{target.describe()} already holds an index of another model, dimension or metric; "
            "choose another --to-name or --to-index"
        )
    return opened


def migrate(source: VectorIndex, target: VectorIndex, batch_size: int = 500, progress: bool = True) -> MigrateReport:
    started = time.perf_counter()
    report = MigrateReport()
    present = target.content_hashes()
    with tqdm(total=source.count(), unit="item", disable=not progress, desc="migrating") as bar:
        for batch in source.iter_items(batch_size=batch_size, with_vectors=True):
            todo = [item for item in batch if item.id not in present or present[item.id] != item.content_hash]
            if todo:
                target.add(todo)
            report.copied += len(todo)
            report.unchanged += len(batch) - len(todo)
            bar.update(len(batch))
    for name, note in source.notes().items():  # after the items: a note describes the catalogue it came with
        target.write_note(name, note)
    target.save()
    report.seconds = time.perf_counter() - started
    return report
