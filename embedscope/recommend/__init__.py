"""Recommendations from embeddings: interactions, user profiles, behavioural item vectors
(item2vec, ALS, EASE, ItemKNN), candidate generation, filtering and re-ranking (popularity blend,
MMR, dedupe)."""

from embedscope.encoders.registry import register
from embedscope.recommend.behavioural import embed_behaviour
from embedscope.recommend.interactions import Interactions, LoadReport, load_interactions, read_interactions
from embedscope.recommend.recommender import Recommendation, Recommender, RecommendResult, recommend

# the behavioural encoders belong to this package, which registers them: the encoder registry (a
# lower layer) never names it. `embedscope/__init__.py` imports this package, so every process that
# can read a behavioural version knows them.
register("item2vec", "embedscope.recommend.behavioural:Item2VecEncoder")
register("als", "embedscope.recommend.behavioural:ALSEncoder")
register("ease", "embedscope.recommend.behavioural:EASEEncoder")
register("itemknn", "embedscope.recommend.behavioural:ItemKNNEncoder")

__all__ = [
    "Interactions",
    "LoadReport",
    "RecommendResult",
    "Recommendation",
    "Recommender",
    "embed_behaviour",
    "load_interactions",
    "read_interactions",
    "recommend",
]
