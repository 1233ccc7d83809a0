"""embedscope: turn any collection of items into embeddings and put them to work."""

from embedscope.api import Collection, Hit

__all__ = ["Collection", "Hit"]

__version__ = "0.1.0"
