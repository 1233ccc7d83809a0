"""Which version `recommend` uses when none is named.

The rule, in order:

1. the version (with its profile and scoring) that `embedscope evaluate-recs` measured best on this
   collection: best full-ranking NDCG@10 on the leave-last-out split among the rows a stored
   version reproduces, recorded in the collection's settings. It is used while that version still
   exists with the encoder configuration that was measured (retrained differently = not measured);
2. otherwise a behavioural version, if the collection has one, in the order they rank on MovieLens
   100K (`PREFERENCE`, docs/recommend.md): learnt from what users did, they beat text versions
   there by a wide margin (HR@10 0.04 for MiniLM, under popularity's 0.09, vs 0.15-0.17);
3. otherwise the active version (text).

Items without interaction history have no behavioural vector: the recommender then falls back to
the text version (cold start) and says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from embedscope.clock import now
from embedscope.jsontypes import JSONObject
from embedscope.recommend.behavioural import METHODS

if TYPE_CHECKING:
    from embedscope.collection import Collection

SETTING = "recommend_default"
#: behavioural methods, best first, by full-ranking NDCG@10 with the mean profile (the default
#: profile) on MovieLens 100K leave-last-out (docs/recommend.md: EASE 0.072, ALS items 0.066,
#: ItemKNN 0.062, item2vec predict 0.034); used only when evaluate-recs has not measured this collection
PREFERENCE = ("ease", "als", "itemknn", "item2vec")


@dataclass
class VersionChoice:
    version: str | None  # None: the active version
    profile: str | None  # None: the caller's default
    scoring: str | None
    reason: str
    measured: bool = False

    def to_dict(self) -> JSONObject:
        return asdict(self)


def record_best(collection: Collection, best: JSONObject) -> None:
    """Remember the measured best row (see embedscope.evaluate.recs.RecsReport.best) for `recommend`."""
    stamp = now()
    collection.set_setting(SETTING, {**best, "recorded_at": stamp})


def recorded_best(collection: Collection) -> JSONObject | None:
    return collection.setting(SETTING)


def choose_version(collection: Collection) -> VersionChoice:
    """The version, profile and scoring `recommend` uses by default, and why (see the module)."""

    versions = {v.name: v for v in collection.versions()}
    rec = recorded_best(collection)
    if rec:
        info = versions.get(str(rec.get("version") or ""))
        if info is not None and info.encoder == rec.get("encoder"):
            pop = rec.get("popularity")
            vs = f" vs popularity {pop:.4f}" if isinstance(pop, int | float) else ""
            return VersionChoice(
                info.name,
                rec.get("profile"),
                rec.get("scoring"),
                f"measured best by evaluate-recs ({rec.get('row')}: {rec.get('metric')} "
                f"{rec.get('value'):.4f}{vs}, {rec.get('protocol')})",
                measured=True,
            )
    behavioural = [v for v in versions.values() if v.encoder.get("name") in METHODS and not v.sparse]
    if behavioural:
        rank = {m: n for n, m in enumerate(PREFERENCE)}
        pick = min(
            behavioural,
            key=lambda v: (rank.get(v.encoder["name"], len(rank)), v.name != v.encoder["name"], v.name),
        )
        stale = "the recorded measurement is out of date; " if rec else ""
        return VersionChoice(
            pick.name,
            None,
            None,
            f"behavioural version, not measured on this collection ({stale}the order of "
            f"{', '.join(PREFERENCE)} measured on MovieLens); `embedscope evaluate-recs "
            f"{collection.name}` measures them here",
        )
    return VersionChoice(None, None, None, "the active version (the collection has no behavioural version)")
