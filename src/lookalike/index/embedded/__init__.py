"""The default index: FAISS for the vectors, SQLite for ids, metadata and the vectors themselves.

SQLite is the source of truth (``store.py``); the FAISS structure is a checkpoint derived from it
(``structure.py``), with a map of positions and a buffer of vectors not yet in it (``positions.py``). A query's
path is chosen in one place (``planner.py``), and other processes' commits are caught up with before every read
(``sync.py``). ``index.py`` puts them together as :class:`EmbeddedIndex`; see its module for the whole design.
"""

from lookalike.index.embedded.index import EmbeddedIndex
from lookalike.index.embedded.store import SCHEMA_VERSION, SQLITE_NAME
from lookalike.index.embedded.structure import FAISS_NAME, factory_string, structure_name, structure_of, training_size

__all__ = [
    "FAISS_NAME",
    "SCHEMA_VERSION",
    "SQLITE_NAME",
    "EmbeddedIndex",
    "factory_string",
    "structure_name",
    "structure_of",
    "training_size",
]
