"""lookalike: visual search for product images.

Data flows one way: the face (``cli``) calls the service (``ingest``, ``search``), and the service calls
the stages (``sources``, ``images``, ``embed``, ``index``), which do not know each other.
"""

__version__ = "0.1.0"
