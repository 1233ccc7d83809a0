"""embedscope: turn any collection of items into embeddings and put them to work.

This is the package's composition root: it exports the public API and imports the packages that
plug into lower layers (`embedscope.recommend` registers its behavioural encoders with the encoder
registry), so that every process knows every encoder. Nothing inside embedscope imports it.
"""

import embedscope.recommend  # noqa: F401 - registers the item2vec and als encoders
from embedscope.collection import Collection
from embedscope.search.base import Hit

__all__ = ["Collection", "Hit"]

__version__ = "0.1.0"
