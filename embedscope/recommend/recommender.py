"""Recommendations = candidate generation from embeddings + filtering + ranking.

0. version: the one named, else the one `evaluate-recs` measured best on this collection, else a
   behavioural one, else the active version (embedscope.recommend.choice says which and why);
1. history: the user's stored interactions (time-ordered), or an anonymous session's item ids;
2. profile: mean / recency-weighted / multi-interest vector(s) over the history items' vectors in
   the chosen embedding version (text or behavioural); for EASE / ItemKNN versions, the same
   profiles weight the history rows of their item x item matrix ("predict" scoring);
3. candidates: nearest items to the profile (per interest for `multi`, merged round-robin), with
   the seen items excluded and the metadata filter (`where`) applied inside the index search;
4. ranking (embedscope.search.rerank, shared with search): one edition per work, blend with
   popularity/quality, MMR for diversity;
5. explanation: for each recommendation, the history items nearest to it (and its interest).

History items without a vector in a behavioural version chosen by default (no interaction history
when it was trained: cold start) send the request to the text version, with a message. A user with
no usable history at all gets the most popular items, with a message saying so; an unknown user is
an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from embedscope.display import show
from embedscope.encoders.base import l2_normalize
from embedscope.encoders.registry import encoder_class
from embedscope.errors import EmbedscopeError, NotFoundError
from embedscope.filters import evaluate_filter
from embedscope.index.base import top_k
from embedscope.jsontypes import JSONObject
from embedscope.recommend import profiles as prof
from embedscope.recommend.behavioural import ItemItemEncoder
from embedscope.recommend.interactions import Interactions, path_for
from embedscope.search import rerank
from embedscope.search.base import Hit
from embedscope.search.loaded import LoadedVersion

if TYPE_CHECKING:
    from embedscope.collection import Collection


@dataclass
class Recommendation:
    id: str
    score: float
    text: str
    metadata: JSONObject = field(default_factory=dict)
    #: history items nearest to this one: [{"id", "title", "text", "similarity"}], best first
    because: list[JSONObject] = field(default_factory=list)
    interest: int | None = None  # which interest (cluster) produced it, for the multi profile


@dataclass
class RecommendResult:
    user: str | None
    profile: str
    version: str | None  # the version the items come from
    items: list[Recommendation]
    history_size: int
    fallback: bool = False  # True when these are popular items, not personalised
    message: str | None = None
    removed_duplicates: list[str] = field(default_factory=list)
    interests: list[JSONObject] = field(default_factory=list)  # multi: size and example members
    #: why this version: named by the caller, or the default rule's reason (embedscope.recommend.choice)
    version_reason: str | None = None

    def to_dict(self) -> JSONObject:
        return asdict(self)


def quality_signal(collection: Collection, source: str, inter: Interactions | None) -> dict[str, float]:
    """Quality/popularity in [0, 1]: "count" (interactions, log-scaled), "wilson" (Wilson lower bound
    of the share of ratings >= 4) or the name of a numeric metadata field."""
    if source in ("count", "wilson"):
        if inter is None:
            raise EmbedscopeError(
                f"quality '{source}' needs interactions; load them or name a numeric metadata field"
            )
        if source == "count":
            return rerank.count_signal(inter.counts())
        pc = inter.positive_counts()
        if pc.empty:
            raise EmbedscopeError("quality 'wilson' needs ratings; the stored interactions have none")
        return dict(zip(pc.index, rerank.wilson_lower_bound(pc["pos"], pc["n"]), strict=True))
    frame, _ = collection.metadata_frame()
    return rerank.field_signal(frame, source)


def popular(
    collection: Collection,
    inter: Interactions,
    k: int,
    *,
    where: str | None = None,
    exclude: Sequence[str] = (),
) -> list[Hit]:
    """Most-interacted items passing the filter, seen items excluded (the cold-start fallback)."""

    counts = inter.counts()
    frame, pos = collection.metadata_frame()
    ok = counts.index.isin(list(pos)) & ~counts.index.isin(list(exclude))
    if where:
        mask = evaluate_filter(where, frame)
        ok &= np.array([bool(mask[pos[i]]) if i in pos else False for i in counts.index])
    top = counts[ok].head(k)
    signal = rerank.count_signal(counts)
    items = collection.get_items(list(top.index))
    return [Hit(i.id, float(signal.get(i.id, 0.0)), i.text, i.metadata) for i in items if i is not None]


class Recommender:
    """Recommendations for one collection and embedding version (cached vectors and interactions)."""

    def __init__(
        self, collection: Collection, version: str | None = None, interactions: Interactions | None = None
    ):
        self.collection = collection
        self.version = version
        self._inter = interactions

    @property
    def interactions(self) -> Interactions | None:
        if self._inter is None and path_for(self.collection).exists():
            self._inter = Interactions.of(self.collection)
        return self._inter

    def _need_interactions(self) -> Interactions:
        inter = self.interactions
        if inter is None:
            raise NotFoundError(
                f"collection '{self.collection.name}' has no interactions; run `embedscope interactions load "
                f"{self.collection.name} FILE`"
            )
        return inter

    def recommend(
        self,
        user: str | None = None,
        *,
        items: Sequence[str] | None = None,
        k: int = 10,
        where: str | None = None,
        profile: str | None = None,
        half_life: float = 5.0,
        half_life_unit: str = "items",
        max_interests: int = 3,
        min_interest_size: int = 5,
        popularity_weight: float = 0.0,
        quality: str = "count",
        mmr_lambda: float | None = None,
        dedupe: bool = True,
        candidates: int | None = None,
        scoring: str = "auto",
        explain: bool = True,
    ) -> RecommendResult:
        """Top-k items for a stored user (`user`) or an anonymous session (`items`, oldest first).

        With no version given (here or to the Recommender), the default rule picks one
        (embedscope.recommend.choice); `profile=None` takes the profile measured with it, else mean.
        `scoring`: "cosine" (nearest items to the profile, through the version's index), "predict"
        (the model's own score: item2vec's profile . context vectors, EASE / ItemKNN's weighted
        history rows of their item x item matrix; measured much better on MovieLens), "auto" =
        predict where available."""
        from embedscope.recommend.choice import choose_version

        if k < 1:
            raise EmbedscopeError("k must be at least 1")
        if profile is not None and profile not in prof.PROFILES:
            raise EmbedscopeError(f"unknown profile '{profile}'; valid: {', '.join(prof.PROFILES)}")
        if scoring not in ("auto", "cosine", "predict"):
            raise EmbedscopeError(f"unknown scoring '{scoring}'; valid: auto, cosine, predict")
        if (user is None) == (items is None):
            raise EmbedscopeError("give either a user or a list of items (anonymous session), not both")
        coll = self.collection
        if self.version is not None:
            version: str | None = self.version  # None: the active version
            reason, chosen = "named by the caller", None
        else:
            chosen = choose_version(coll)
            version, reason = chosen.version, chosen.reason
            if chosen.scoring and scoring == "auto":
                scoring = chosen.scoring
        if profile is None:
            profile = chosen.profile if chosen is not None and chosen.profile else "mean"
        if user is not None:
            hist = self._need_interactions().history(str(user))
            seen = hist["item"].tolist()
            times = hist["timestamp"].to_numpy(dtype=np.float64)
        else:
            seen = [str(i).strip() for i in items or [] if str(i).strip()]
            unknown = [i for i, it in zip(seen, coll.get_items(seen), strict=True) if it is None]
            if unknown:
                raise NotFoundError(
                    f"{len(unknown)} session item(s) are not in collection '{coll.name}': "
                    f"{', '.join(map(repr, unknown[:5]))}"
                )
            times = None
        v = coll.load_version(version)
        if sp.issparse(v.data.vectors):
            raise EmbedscopeError(
                f"version '{v.info.name}' is sparse ({v.info.encoder['name']}); "
                "recommendations need a dense version"
            )
        rows = [v.row_of.get(i) for i in seen]
        usable = [n for n, r in enumerate(rows) if r is not None]
        who = f"user '{user}'" if user is not None else "this session"
        notes: list[str] = []
        if seen and not usable and chosen is not None and chosen.version is not None:
            # cold start: the history has no interaction-learnt vector; the text version can place it
            text = _text_version(coll, v.info.name)
            if text is not None:
                tv = coll.load_version(text)
                trows = [tv.row_of.get(i) for i in seen]
                if any(r is not None for r in trows):
                    notes.append(
                        f"{who}'s item(s) have no interaction history in '{v.info.name}' (cold start); "
                        f"recommended from the text version '{text}'"
                    )
                    reason = f"cold start: text version instead of '{v.info.name}' ({reason})"
                    v, rows = tv, trows
                    usable = [n for n, r in enumerate(rows) if r is not None]
                    scoring = "auto"
        if not usable:
            hits = popular(coll, self._need_interactions(), k, where=where, exclude=seen)
            why = (
                "has no history"
                if not seen
                else f"has no history item with a vector in version '{v.info.name}'"
            )
            return RecommendResult(
                user=user,
                profile="popular",
                version=v.info.name,
                history_size=len(seen),
                fallback=True,
                items=[Recommendation(h.id, h.score, h.text, h.metadata) for h in hits],
                message=f"{who} {why}; showing the most popular items instead",
                version_reason=reason,
            )
        if len(usable) < len(seen):
            notes.append(
                f"{len(seen) - len(usable)} of {len(seen)} history item(s) have no vector in version "
                f"'{v.info.name}' and were left out"
            )
        hrows = np.array([rows[n] for n in usable], dtype=np.int64)
        hvec = np.asarray(v.data.vectors[hrows], dtype=np.float32)
        htimes = times[usable] if times is not None else None
        hids = [seen[n] for n in usable]
        reranks = dedupe or popularity_weight > 0 or mmr_lambda is not None
        n_cand = candidates or (max(5 * k, 50) if reranks else k)

        interests: list[prof.Interest]
        if profile == "mean":
            interests = [prof.Interest(prof.mean_profile(hvec), np.arange(len(hids)))]
        elif profile == "recency":
            interests = [
                prof.Interest(
                    prof.recency_profile(hvec, htimes, half_life, half_life_unit), np.arange(len(hids))
                )
            ]
        else:
            interests = prof.multi_interest(hvec, max_interests=max_interests, min_size=min_interest_size)
        queries = np.stack([i.vector for i in interests])
        context = getattr(v.encoder, "context", None)
        item_item = (
            v.encoder if isinstance(v.encoder, ItemItemEncoder) and v.encoder.weights is not None else None
        )
        if scoring == "predict" and context is None and item_item is None:
            raise EmbedscopeError(
                f"scoring 'predict' needs an item2vec version or an item x item one (ease, itemknn); "
                f"'{v.info.name}' is neither"
            )
        predict = scoring != "cosine" and (context is not None or item_item is not None)
        hist_weights = None
        if predict and item_item is not None:
            hist_weights = _history_weights(interests, profile, len(hids), htimes, half_life, half_life_unit)
            runs = _rank_rows(coll, v, item_item.score_history(hrows, hist_weights), n_cand, where, seen)
        elif predict and context is not None:
            runs = _rank_rows(coll, v, queries @ context.T, n_cand, where, seen)
        else:
            runs = coll.search_vectors(queries, n_cand, version=v.info.name, where=where, exclude=seen)
        hits, origin = _merge_round_robin(runs)

        removed: list[str] = []
        if dedupe:
            kept, dropped = rerank.dedupe(hits, coll.display_fields())
            removed = [h.id for h in dropped]
            hits = kept
        if popularity_weight > 0:
            hits = rerank.blend(hits, quality_signal(coll, quality, self.interactions), popularity_weight)
        if mmr_lambda is not None:
            hits = rerank.mmr(hits, _rows_vectors(v, hits), mmr_lambda, k)
        hits = hits[:k]

        out = []
        hnorm = l2_normalize(hvec)
        for h in hits:
            rec = Recommendation(
                h.id, h.score, h.text, h.metadata, interest=origin.get(h.id) if profile == "multi" else None
            )
            if explain:
                members = interests[origin[h.id]].members if profile == "multi" else None
                weights = None
                if hist_weights is not None and item_item is not None:
                    # each history item's share of this item's score: w_i * W[i, item] / score
                    weights = hist_weights[origin.get(h.id, 0)] * item_item.contributions(
                        hrows, v.row_of[h.id]
                    )
                    weights = weights / max(float(weights.sum()), 1e-12)
                rec.because = _because(
                    _rows_vectors(v, [h])[0], hnorm, hids, coll, members=members, sims=weights
                )
            out.append(rec)
        info = []
        if profile == "multi":
            info = [
                {"size": len(i.members), "examples": [hids[m] for m in i.members[-3:]]} for i in interests
            ]
        if len(out) < k:
            notes.append(f"only {len(out)} item(s) match (filter and seen items exclude the rest)")
        return RecommendResult(
            user=user,
            profile=profile,
            version=v.info.name,
            items=out,
            history_size=len(seen),
            removed_duplicates=removed,
            interests=info,
            message="; ".join(notes) or None,
            version_reason=reason,
        )


def _text_version(coll: Collection, other: str) -> str | None:
    """The active version when it is a dense text one (not `other`): where cold items have vectors."""

    try:
        name = coll.active_version
    except NotFoundError:
        return None
    if name == other:
        return None
    info = coll.version_info(name)
    try:
        cls = encoder_class(info.encoder.get("name", ""))
    except NotFoundError:
        return None
    return name if cls.encodes_text and not info.sparse else None


def _history_weights(
    interests: list[prof.Interest],
    profile: str,
    n: int,
    times: np.ndarray | None,
    half_life: float,
    unit: str,
) -> np.ndarray:
    """(interests, n) weights of the history rows, each row summing to 1: uniform (mean), decayed
    (recency, the same weights as the recency vector profile), or uniform within each interest."""
    out = np.zeros((len(interests), n), dtype=np.float32)
    if profile == "recency":
        out[0] = prof.recency_weights(times, n, half_life, unit)
    else:
        for r, interest in enumerate(interests):
            out[r, interest.members] = 1.0
    return out / np.maximum(out.sum(axis=1, keepdims=True), 1e-12)


def _rank_rows(
    coll: Collection,
    v: LoadedVersion,
    scores: np.ndarray,
    k: int,
    where: str | None,
    seen: Sequence[str],
) -> list[list[Hit]]:
    """Top k rows of (queries, rows) model scores ("predict" scoring), with the same row mask
    (filter, seen items, deleted items) the index search uses; exact, as the exact index is."""

    scores = np.array(scores, dtype=np.float32, copy=True)
    allowed = coll.allowed_rows(v, where, seen)
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    rows, vals = top_k(scores, k)
    return [coll.pipeline.hits_for_rows(v, r, s) for r, s in zip(rows, vals, strict=True)]


def _merge_round_robin(runs: list[list[Hit]]) -> tuple[list[Hit], dict[str, int]]:
    """Interleave per-interest lists (first interest first), skipping repeats; remember the origin."""
    merged: list[Hit] = []
    origin: dict[str, int] = {}
    for pos in range(max((len(r) for r in runs), default=0)):
        for n, run in enumerate(runs):
            if pos < len(run) and run[pos].id not in origin:
                origin[run[pos].id] = n
                merged.append(run[pos])
    return merged, origin


def _rows_vectors(v: LoadedVersion, hits: Sequence[Hit]) -> np.ndarray:
    return np.asarray(v.data.vectors[[v.row_of[h.id] for h in hits]], dtype=np.float32)


def _because(
    vec: np.ndarray,
    hnorm: np.ndarray,
    hids: list[str],
    coll: Collection,
    members: np.ndarray | None = None,
    top: int = 2,
    sims: np.ndarray | None = None,
) -> list[JSONObject]:
    """History items most similar to a recommended item (within its interest for multi); with
    `sims` (an item x item model's shares of the item's score) those that add most to it."""
    if sims is None:
        sims = hnorm @ l2_normalize(vec[None, :])[0]
    cand = np.asarray(members) if members is not None and len(members) else np.arange(len(hids))
    best = cand[np.argsort(-sims[cand], kind="stable")[:top]]

    items = coll.get_items([hids[b] for b in best])
    fields = coll.display_fields()
    return [
        {
            "id": hids[b],
            "title": show(it.text, it.metadata, fields).title if it else "",
            "text": it.text if it else "",
            "similarity": round(float(sims[b]), 4),
        }
        for b, it in zip(best, items, strict=True)
    ]


def history_frame(collection: Collection, user: str) -> pd.DataFrame:
    """A user's history with item texts, for display."""
    hist = Interactions.of(collection).history(user)
    texts = {i.id: i.text for i in collection.get_items(hist["item"].tolist()) if i is not None}
    return hist.assign(text=hist["item"].map(texts))


# Any: `Recommender.recommend`'s keyword arguments (and `version`), passed on whole
def recommend(collection: Collection, user: str | None = None, **kwargs: Any) -> RecommendResult:
    """One-shot helper: `recommend(coll, "196", k=10, where="year >= 1990", profile="recency")`."""
    version = kwargs.pop("version", None)
    return Recommender(collection, version).recommend(user, **kwargs)
