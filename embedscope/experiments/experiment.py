"""Online experiments: two search configurations compared on live traffic.

An experiment is stored per collection as `<collection>/experiments/<name>.json` (its definition,
replaced atomically when it stops) next to `<name>.events.jsonl` (its impressions and clicks, see
`eventlog.py`). At most one experiment runs per collection, so a search knows which one it serves.

The two sides are named search configurations (a version such as `minilm`, or a recipe such as
`hybrid`); serving takes them as rankers, callables from a query to ranked results, so this module
does not depend on how search is done. `search_ranker` wires a configuration to a collection's
search pipeline (the server passes each served collection's, with its query cache and reader lock).
"""

from __future__ import annotations

import builtins
import fcntl
import json
import os
import random
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from embedscope.clock import now
from embedscope.collection import Collection
from embedscope.errors import (
    ConflictError,
    EmbedscopeError,
    NotFoundError,
    TooManyRequestsError,
    storage_errors,
)
from embedscope.experiments.eventlog import MAX_SEGMENT_BYTES, EventLog, iter_events
from embedscope.experiments.interleave import Ranker, Result, Side, bucket, item_id, team_draft
from embedscope.jsontypes import JSONObject
from embedscope.names import check_name

if TYPE_CHECKING:
    from embedscope.search.base import Hit, SearchResult
    from embedscope.search.pipeline import SearchPipeline

Method = Literal["interleave", "ab"]
METHODS: tuple[Method, ...] = ("interleave", "ab")
_RECENT_IMPRESSIONS = 50_000  # impressions kept in memory to check and credit clicks
#: click requests one impression may get per minute (more are HTTP 429)
CLICKS_PER_MINUTE = 30


@dataclass
class Experiment:
    name: str
    a: str  # search configuration shown as side A (version or recipe name)
    b: str
    method: Method
    started_at: str
    stopped_at: str | None = None

    @property
    def status(self) -> str:
        return "stopped" if self.stopped_at else "running"

    def to_dict(self) -> JSONObject:
        return {**asdict(self), "status": self.status}


@dataclass
class Impression:
    """One result list shown for one query, with the side credited for each position."""

    id: str
    experiment: str
    query: str
    user: str | None
    results: list[Result] = field(repr=False)  # what the rankers returned: ids or hits
    teams: list[Side]
    side: Side | None  # A/B: the user's bucket; interleaving: None
    ts: str = field(default_factory=lambda: now("milliseconds"))

    @property
    def ids(self) -> list[str]:
        return [item_id(r) for r in self.results]

    def record(self) -> JSONObject:
        return {
            "type": "impression",
            "id": self.id,
            "ts": self.ts,
            "query": self.query,
            "user": self.user,
            "ids": self.ids,
            "teams": self.teams,
            "side": self.side,
        }


class Experiments:
    """The experiments of one collection: start, stop, list, serve impressions, log clicks."""

    def __init__(
        self, folder: str | Path, *, fsync: bool = True, max_log_bytes: int = MAX_SEGMENT_BYTES
    ) -> None:
        self.folder = Path(folder)
        with storage_errors("creating the experiments folder"):
            self.folder.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        #: the event log continues in a new segment after this many bytes (eventlog.py)
        self.max_log_bytes = max_log_bytes
        self._logs: dict[str, EventLog] = {}
        self._recent: dict[str, OrderedDict[str, JSONObject]] = {}
        #: per impression: the positions clicked (logged once each) and recent click requests' times
        self._clicks: dict[tuple[str, str], tuple[set[int], deque[float]]] = {}
        self._read_back: set[str] = set()
        self._guard = threading.Lock()

    @classmethod
    def of(
        cls, collection: Collection, *, fsync: bool = True, max_log_bytes: int = MAX_SEGMENT_BYTES
    ) -> Experiments:
        with storage_errors("creating the experiments folder"):
            folder = collection.folder("experiments")
        return cls(folder, fsync=fsync, max_log_bytes=max_log_bytes)

    # --- definitions --------------------------------------------------------------------------
    def _definition(self, name: str) -> Path:
        return self.folder / f"{check_name(name, 'experiment')}.json"

    def events_path(self, name: str) -> Path:
        return self.folder / f"{check_name(name, 'experiment')}.events.jsonl"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise start/stop between processes (the CLI and a running server)."""
        with storage_errors("locking the experiments folder"):
            fh = open(self.folder / ".lock", "a")  # noqa: SIM115 - closed below, after the block
        with fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _write(self, exp: Experiment, *, new: bool) -> None:
        """Atomic: a reader sees the old definition or the new one whole; `new` refuses to overwrite."""
        path = self._definition(exp.name)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        # a full disk is StorageFullError (HTTP 507), never a traceback, and leaves no .tmp behind
        with storage_errors(f"{'starting' if new else 'stopping'} experiment '{exp.name}'"):
            try:
                with open(tmp, "w", encoding="utf-8") as fh:
                    json.dump(asdict(exp), fh, indent=2)
                    fh.flush()
                    os.fsync(fh.fileno())
                if new:
                    os.link(tmp, path)  # fails if the name is taken, unlike os.replace
                else:
                    os.replace(tmp, path)
            except FileExistsError:
                raise ConflictError(
                    f"experiment '{exp.name}' already exists; choose another --name"
                ) from None
            finally:
                tmp.unlink(missing_ok=True)
            dir_fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def list(self) -> list[Experiment]:
        """All experiments, oldest first."""
        out = []
        for path in self.folder.glob("*.json"):
            if not path.name.startswith("."):
                out.append(self._read(path))
        return sorted(out, key=lambda e: e.started_at)

    def _read(self, path: Path) -> Experiment:
        try:
            return Experiment(**json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError) as exc:
            raise EmbedscopeError(f"experiment definition {path} is damaged ({exc}); delete it") from None

    def get(self, name: str | None = None) -> Experiment:
        """The named experiment, or without a name the running one (else the latest)."""
        if name is None:
            all_ = self.list()
            if not all_:
                raise NotFoundError("no experiments yet; start one with `embedscope experiment start`")
            return self.running() or all_[-1]
        path = self._definition(name)
        if not path.exists():
            known = ", ".join(e.name for e in self.list()) or "none"
            raise NotFoundError(f"no experiment '{name}' (experiments: {known})")
        return self._read(path)

    def running(self) -> Experiment | None:
        live = [e for e in self.list() if e.status == "running"]
        return live[-1] if live else None

    def start(
        self,
        a: str,
        b: str,
        *,
        method: str = "interleave",
        name: str | None = None,
        configurations: Sequence[str] | None = None,
    ) -> Experiment:
        """Start comparing configurations `a` and `b`; `configurations` lists the valid names."""
        if method not in METHODS:
            raise EmbedscopeError(f"unknown method '{method}'; valid: {', '.join(METHODS)}")
        if a == b:
            raise EmbedscopeError("an experiment compares two different configurations; give --a and --b")
        if configurations is not None:
            for side in (a, b):
                if side not in configurations:
                    raise NotFoundError(
                        f"no search configuration '{side}'; valid: {', '.join(configurations) or 'none'}"
                    )
        with self._locked():
            live = self.running()
            if live is not None:
                raise ConflictError(
                    f"experiment '{live.name}' is running; stop it first (`embedscope experiment stop`)"
                )
            if name is None:
                taken = {e.name for e in self.list()}
                base = check_name(f"{a}-vs-{b}"[:60], "experiment")
                name = next(n for n in (base, *(f"{base}-{i}" for i in range(2, 10_000))) if n not in taken)
            exp = Experiment(check_name(name, "experiment"), a, b, method, started_at=now("milliseconds"))
            self._write(exp, new=True)
        return exp

    def stop(self, name: str | None = None) -> Experiment:
        """Stop the named experiment (default: the running one); its log is kept for `report`."""
        with self._locked():
            exp = self.get(name) if name else self.running()
            if exp is None:
                raise NotFoundError("no experiment is running")
            if exp.status == "stopped":
                raise ConflictError(f"experiment '{exp.name}' was already stopped at {exp.stopped_at}")
            exp.stopped_at = now("milliseconds")
            self._write(exp, new=False)
        self._close_log(exp.name)
        return exp

    # --- events -------------------------------------------------------------------------------
    def _log(self, name: str) -> EventLog:
        with self._guard:
            log = self._logs.get(name)
            if log is None:
                log = self._logs[name] = EventLog(
                    self.events_path(name), fsync=self.fsync, max_bytes=self.max_log_bytes
                )
            return log

    def _close_log(self, name: str) -> None:
        with self._guard:
            log = self._logs.pop(name, None)
        if log is not None:
            log.close()

    def close(self) -> None:
        for name in list(self._logs):
            self._close_log(name)

    def present(
        self,
        exp: Experiment,
        query: str,
        rank_a: Ranker,
        rank_b: Ranker,
        *,
        k: int = 10,
        user: str | None = None,
        rng: random.Random | None = None,
    ) -> Impression:
        """The list to show for `query` (interleaved, or the user's side for A/B), logged."""
        if exp.status != "running":
            raise ConflictError(f"experiment '{exp.name}' is stopped")
        if k < 1:
            raise EmbedscopeError("k must be at least 1")
        if exp.method == "ab":
            side = bucket(exp.name, user or "")
            results = list((rank_a if side == "a" else rank_b)(query))[:k]
            teams: list[Side] = [side] * len(results)
            imp = Impression(uuid.uuid4().hex, exp.name, query, user, results, teams, side)
        else:
            merged = team_draft(rank_a(query), rank_b(query), k, rng or random.Random())
            imp = Impression(uuid.uuid4().hex, exp.name, query, user, merged.results, merged.teams, None)
        record = imp.record()
        self._log(exp.name).append(record)
        self._remember(exp.name, record)
        return imp

    def _remember(self, name: str, record: JSONObject) -> None:
        with self._guard:
            recent = self._recent.setdefault(name, OrderedDict())
            recent[record["id"]] = record
            while len(recent) > _RECENT_IMPRESSIONS:
                forgotten, _ = recent.popitem(last=False)
                self._clicks.pop((name, forgotten), None)

    def _impression(self, name: str, impression_id: str) -> JSONObject:
        with self._guard:
            recent = self._recent.get(name)
            found = recent.get(impression_id) if recent is not None else None
        if found is not None:
            return found
        if name not in self._read_back:
            # logged before this process started (a server restart): read the file once, not per
            # click; the clicks already logged too, so that a repeated click is still a duplicate
            self._read_back.add(name)
            clicked: list[JSONObject] = []
            for record in iter_events(self.events_path(name)):
                if record and record.get("type") == "impression" and record.get("id"):
                    self._remember(name, record)
                elif record and record.get("type") == "click" and isinstance(record.get("position"), int):
                    clicked.append(record)
            with self._guard:
                kept = self._recent.get(name) or OrderedDict()
                for record in clicked:
                    if str(record.get("impression")) in kept:
                        key = (name, str(record.get("impression")))
                        self._clicks.setdefault(key, (set(), deque()))[0].add(record["position"])
            return self._impression(name, impression_id)
        raise NotFoundError(f"experiment '{name}' has no impression '{impression_id}'")

    def click(self, name: str, impression_id: str, position: int, item: str | None = None) -> JSONObject:
        """Log a click on `position` (0-based) of an impression; `item`, if given, must be shown there.

        A position is logged once per impression: a repeated click (a double click, a replayed
        request) answers the same record with `duplicate: True` and writes nothing, so the log holds
        what the report counts. More than CLICKS_PER_MINUTE click requests on one impression within a
        minute are refused (TooManyRequestsError, HTTP 429): a person does not click that fast, and
        the log must not grow at whatever rate a script sends."""
        exp = self.get(name)
        if exp.status != "running":
            raise ConflictError(f"experiment '{name}' is stopped; clicks are no longer recorded")
        imp = self._impression(name, impression_id)
        ids = imp["ids"]
        if not 0 <= position < len(ids):
            raise EmbedscopeError(f"position {position} is outside the impression's {len(ids)} results")
        if item is not None and item != ids[position]:
            raise ConflictError(f"item '{item}' is not at position {position} of impression {impression_id}")
        record = {
            "type": "click",
            "ts": now("milliseconds"),
            "impression": impression_id,
            "position": position,
            "item": ids[position],
            "side": imp["teams"][position],
            "query": imp["query"],
            "user": imp.get("user"),
        }
        tick = time.monotonic()
        with self._guard:
            positions, recent = self._clicks.setdefault((name, impression_id), (set(), deque()))
            while recent and recent[0] < tick - 60:
                recent.popleft()
            if len(recent) >= CLICKS_PER_MINUTE:
                raise TooManyRequestsError(
                    f"more than {CLICKS_PER_MINUTE} clicks a minute on impression {impression_id}; "
                    "slow down (each result's click is logged once anyway)"
                )
            recent.append(tick)
            if position in positions:
                return {**record, "duplicate": True}
            positions.add(position)  # claimed before writing, so two racing requests log it once
        try:
            self._log(name).append(record)
        except BaseException:
            with self._guard:
                positions.discard(position)  # not logged: a retry may log it
            raise
        return {**record, "duplicate": False}

    def clicks(self, name: str | None = None) -> builtins.list[JSONObject]:
        """The experiment's logged clicks in log order (query, item, side, position, ...): the
        (query, clicked item) pairs `embedscope tune --from-clicks` learns from."""
        exp = self.get(name)
        return [r for r in iter_events(self.events_path(exp.name)) if r and r.get("type") == "click"]


# --- wiring to the collection -----------------------------------------------------------------------
def clicked_pairs(collection: Collection, name: str | None = None) -> tuple[list[tuple[str, str]], int]:
    """Distinct (query, clicked item's text) pairs of an experiment's log, in log order, and the
    number of distinct pairs whose item has since left the collection (skipped): what `embedscope
    tune --from-clicks` learns from, next to its self-supervised pairs."""
    experiments = Experiments.of(collection)
    exp = experiments.get(name)
    clicks = experiments.clicks(exp.name)
    if not clicks:
        raise EmbedscopeError(
            f"experiment '{exp.name}' has logged no clicks yet: serve it (`embedscope serve`) first"
        )
    texts = {item.id: item.text for item in collection.items()}
    seen = dict.fromkeys((str(c.get("query", "")), str(c.get("item", ""))) for c in clicks)
    pairs = [(query, texts[item]) for query, item in seen if query.strip() and item in texts]
    return pairs, sum(1 for _, item in seen if item not in texts)


# --- wiring to the collection's search -------------------------------------------------------------
def configurations(collection: Collection) -> list[str]:
    """Names an experiment side can use: the collection's versions and its search recipes (e.g.
    `hybrid`, stored or implicit)."""
    names = [v.name for v in collection.versions()]
    return names + [r for r in collection.recipes() if r not in names]


def search_ranker(
    pipeline: SearchPipeline,
    configuration: str,
    *,
    k: int = 10,
    where: str | None = None,
    results: list[SearchResult] | None = None,
) -> Ranker:
    """A ranker answering with one named configuration through a search pipeline: the one search
    path, so an experiment's sides rank exactly as `/search` would with `version=configuration`.
    Pass `collection.pipeline`, or in the server the served collection's own. `results`, if given,
    collects each `SearchResult` (its stage timings and cache use) as the ranker answers.

    A query the side cannot encode (a sparse version that knows none of its words) gets no results
    from it instead of an error: the other side still answers, and an empty list is that side's
    honest answer to the query."""

    def rank(query: str) -> list[Hit]:
        [result] = pipeline.search_many([query], k, using=configuration, where=where, strict=False)
        if results is not None:
            results.append(result)
        return result.hits

    return rank
