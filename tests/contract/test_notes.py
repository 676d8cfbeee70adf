"""Notes: kept with the index, replaced, removed, checked, and durable across reopening."""

from __future__ import annotations

import pytest

from lookalike.errors import IndexError_


def test_notes_are_kept_replaced_and_removed_alike(make_index, reopen, real_items) -> None:
    index = make_index("cosine", "hnsw", dim=len(real_items[0].vector))
    index.add(real_items[:20])
    assert index.notes() == {}
    calibration = {"model": "efficientnet-lite0", "thresholds": {"same_item": 0.91, "none": 0.42}, "n": [1, 2]}
    index.write_note("calibration", calibration)
    index.write_note("colour", {"weight": 0.25})
    index.write_note("colour", {"weight": 0.5})  # replaces
    assert index.notes() == {"calibration": calibration, "colour": {"weight": 0.5}}
    index.write_note("colour", None)
    with pytest.raises(IndexError_, match="note name"):
        index.write_note("Bad Name!", {"x": 1})
    with pytest.raises(IndexError_, match="JSON object"):
        index.write_note("calibration", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(IndexError_, match="NaN"):
        index.write_note("calibration", {"x": float("nan")})
    with pytest.raises(IndexError_, match="over 65536 bytes"):
        index.write_note("calibration", {"x": "y" * 70_000})
    index.save()
    settings = index.settings
    reopened = reopen(index)
    assert reopened.notes() == {"calibration": calibration}  # refused writes changed nothing
    assert reopened.count() == 20 and reopened.settings == settings  # nor items and settings
