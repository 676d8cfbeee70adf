"""The Milvus backend: one Milvus collection per index, reached with pymilvus (the ``milvus`` extra).

``index.py`` holds :class:`MilvusIndex` (opening, writing, searching, durability) and its module docstring the
whole design (layout, consistency, exact search, batching); ``reads.py`` what it reads back; ``rows.py`` the
collection's layout and rows; ``expressions.py`` filters as Milvus expressions; ``client.py`` connections and
errors.
"""

from lookalike.index.milvus.client import _IMPORT_ERROR, _is_outage
from lookalike.index.milvus.expressions import to_expression
from lookalike.index.milvus.index import MilvusIndex
from lookalike.index.milvus.rows import FORMAT, MAX_DIM, MAX_ID_BYTES, MAX_TOPK

__all__ = [
    "FORMAT",
    "MAX_DIM",
    "MAX_ID_BYTES",
    "MAX_TOPK",
    "_IMPORT_ERROR",
    "MilvusIndex",
    "_is_outage",
    "to_expression",
]
