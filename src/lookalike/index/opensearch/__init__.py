"""The OpenSearch backend: one OpenSearch index per lookalike index, searched with the k-NN plugin.

``index.py`` holds :class:`OpenSearchIndex` (opening, writing, searching, durability) and its module docstring
the whole design (documents, scores, vectors, visibility, the documentation relied on); ``reads.py`` what it
reads back; ``mapping.py`` the index's shape and filters as clauses; ``config.py`` how to reach a cluster;
``client.py`` calls and their errors.
"""

from lookalike.index.opensearch.config import DEFAULT_URL, ENGINES, Engine, OpenSearchConfig
from lookalike.index.opensearch.index import OpenSearchIndex
from lookalike.index.opensearch.mapping import MAX_DIM, MAX_K, filter_clauses, index_body

__all__ = [
    "DEFAULT_URL",
    "ENGINES",
    "MAX_DIM",
    "MAX_K",
    "Engine",
    "OpenSearchConfig",
    "OpenSearchIndex",
    "filter_clauses",
    "index_body",
]
