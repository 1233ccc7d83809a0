"""embedscope: turn any collection of items into embeddings and put them to work."""

from embedscope.collection import Collection
from embedscope.search.base import Hit

__all__ = ["Collection", "Hit"]

__version__ = "0.1.0"
