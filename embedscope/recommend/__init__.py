"""Recommendations from embeddings: interactions, user profiles, behavioural item vectors
(item2vec, ALS), candidate generation, filtering and re-ranking (popularity blend, MMR, dedupe)."""

from embedscope.recommend.behavioural import embed_behaviour
from embedscope.recommend.interactions import Interactions, LoadReport, load_interactions, read_interactions
from embedscope.recommend.recommender import Recommendation, Recommender, RecommendResult, recommend

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
