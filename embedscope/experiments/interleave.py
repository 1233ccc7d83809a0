"""Team-draft interleaving (Radlinski, Kurup & Joachims, CIKM 2008) and A/B bucketing.

Interleaving shows one merged list per query: like captains picking teams, the side with fewer
picks so far (a coin decides when they are level) adds its best result not yet shown, and that
result is credited to it. A click credits its team; the side with more credited clicks wins the
impression, equal credit (no clicks included) is a tie. Because both rankers are judged on the same
user, query and moment, interleaving needs far fewer impressions than A/B (Chapelle et al., TOIS
2012), which compares the click rates of two disjoint user groups.

Team draft is a dozen lines with no library that implements it for arbitrary result objects, so it
is written here; rankers are plain callables so this module knows nothing about how search works.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from embedscope.errors import EmbedscopeError

Side = Literal["a", "b"]
Outcome = Literal["a", "b", "tie"]


class Identified(Protocol):
    """A result object with an `id` attribute (a search hit)."""

    @property
    def id(self) -> object: ...


#: what a ranker returns: ids, or objects with an `id` (search hits)
Result = str | Identified
#: query -> ranked results, best first
Ranker = Callable[[str], Sequence[Result]]


def item_id(result: Result) -> str:
    """A result's id: the result itself if it is a string, else its `id` attribute."""
    return result if isinstance(result, str) else str(result.id)


@dataclass(frozen=True)
class Interleaved:
    results: list[Result]  # the merged list, best first
    teams: list[Side]  # the side credited with each position


def team_draft(a: Sequence[Result], b: Sequence[Result], k: int, rng: random.Random) -> Interleaved:
    """Merge two rankings into one of at most `k` results, each credited to the side that picked it.

    A result both sides rank is shown once, credited to whichever picked it first. When one side
    runs out, the other fills the remaining places (credited to it), so the page shows as many
    results as the two rankings have between them."""
    results: list[Result] = []
    teams: list[Side] = []
    shown: set[str] = set()
    next_a = next_b = 0
    picks = {"a": 0, "b": 0}
    while len(results) < k:
        while next_a < len(a) and item_id(a[next_a]) in shown:
            next_a += 1
        while next_b < len(b) and item_id(b[next_b]) in shown:
            next_b += 1
        a_left, b_left = next_a < len(a), next_b < len(b)
        if not (a_left or b_left):
            break
        if a_left and b_left:
            level = picks["a"] == picks["b"]
            side: Side = "a" if picks["a"] < picks["b"] or (level and rng.random() < 0.5) else "b"
        else:
            side = "a" if a_left else "b"
        pick = a[next_a] if side == "a" else b[next_b]
        results.append(pick)
        teams.append(side)
        shown.add(item_id(pick))
        picks[side] += 1
    return Interleaved(results, teams)


def credit(teams: Sequence[str], clicked_positions: Iterable[int]) -> tuple[int, int]:
    """Clicks credited to A and to B; a position clicked twice counts once."""
    positions = {p for p in clicked_positions if 0 <= p < len(teams)}
    credit_a = sum(1 for p in positions if teams[p] == "a")
    return credit_a, len(positions) - credit_a


def winner(credit_a: int, credit_b: int) -> Outcome:
    if credit_a == credit_b:
        return "tie"
    return "a" if credit_a > credit_b else "b"


def bucket(experiment: str, user: str) -> Side:
    """The A/B side of a user: a stable hash of experiment name and user id.

    sha256 rather than Python's hash(), which is salted per process: the same user must land on
    the same side after a server restart. The experiment name is part of the key so that a user's
    side in one experiment says nothing about their side in the next."""
    if not user:
        raise EmbedscopeError("A/B bucketing needs a user or session id")
    digest = hashlib.sha256(f"{experiment}\x00{user}".encode()).digest()
    return "a" if int.from_bytes(digest[:8], "big") % 2 == 0 else "b"
