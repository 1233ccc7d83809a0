"""Online experiments: team-draft interleaving and A/B tests between two search configurations,
a crash-safe impression/click log, and reports with significance tests (see docs/online.md)."""

from embedscope.experiments.experiment import (
    Experiment,
    Experiments,
    Impression,
    clicked_pairs,
    configurations,
    search_ranker,
)
from embedscope.experiments.interleave import Ranker, bucket, team_draft
from embedscope.experiments.report import report

__all__ = [
    "Experiment",
    "Experiments",
    "Impression",
    "Ranker",
    "bucket",
    "clicked_pairs",
    "configurations",
    "report",
    "search_ranker",
    "team_draft",
]
