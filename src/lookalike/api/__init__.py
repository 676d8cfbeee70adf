"""The web face: a FastAPI app with the REST API, the reference design's routes, and the search page."""

from lookalike.api.app import create_app

__all__ = ["create_app"]
