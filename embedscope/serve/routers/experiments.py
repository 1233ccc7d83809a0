"""Online experiments over HTTP: start and stop (bearer token), list, report (JSON and PNG), and
the clicks the page sends. Serving a running experiment's lists to `/search` is serve/online.py.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from embedscope.experiments import configurations, report
from embedscope.experiments.experiment import Experiment
from embedscope.jsontypes import JSONObject
from embedscope.serve import models as m
from embedscope.serve.deps import WRITES, State
from embedscope.serve.state import Served

log = logging.getLogger("embedscope.serve")
router = APIRouter(prefix="/api/collections/{name}", tags=["experiments"])
# matplotlib's pyplot keeps global state: one report picture at a time
_plot_lock = threading.Lock()


def _out(exp: Experiment) -> m.ExperimentOut:
    return m.ExperimentOut(**exp.to_dict())


@router.get("/experiments")
def list_experiments(name: str, state: State) -> list[m.ExperimentOut]:
    """The collection's experiments, oldest first; at most one has status `running`."""
    return [_out(e) for e in state.get(name).experiments.list()]


@router.post(
    "/experiments",
    dependencies=WRITES,
    status_code=201,
    responses={409: {"model": m.ErrorOut}, 507: {"model": m.ErrorOut}},
)
def start_experiment(name: str, req: m.ExperimentStart, request: Request, state: State) -> m.ExperimentOut:
    """Start comparing two search configurations on live traffic (one running experiment per
    collection: 409 while another runs)."""
    served = state.get(name)
    request.state.record.update(collection=name, action="experiment start", a=req.a, b=req.b)
    valid = configurations(served.reader)
    exp = served.experiments.start(req.a, req.b, method=req.method, name=req.name, configurations=valid)
    request.state.record["experiment"] = exp.name
    return _out(exp)


@router.post("/experiments/{experiment}/stop", dependencies=WRITES, responses={409: {"model": m.ErrorOut}})
def stop_experiment(name: str, experiment: str, request: Request, state: State) -> m.ExperimentOut:
    """Stop an experiment; searches get plain results again, its log stays for the report."""
    request.state.record.update(collection=name, action="experiment stop", experiment=experiment)
    return _out(state.get(name).experiments.stop(experiment))


def _report(served: Served, experiment: str, plot: Path | None = None) -> JSONObject:
    out = report(served.experiments, experiment, plot=plot)
    out["log"].pop("path", None)  # a server path is no business of the client's
    return out


@router.get("/experiments/{experiment}/report")
def experiment_report(name: str, experiment: str, state: State) -> m.ExperimentReport:
    """Winner, per-side credit (interleaving) or click-through rate (A/B), the significance test and
    the impressions so far: what `embedscope experiment report --json` prints."""
    return m.ExperimentReport(**_report(state.get(name), experiment))


@router.get(
    "/experiments/{experiment}/report.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the cumulative preference over time"}},
)
def experiment_plot(name: str, experiment: str, state: State) -> Response:
    """The cumulative preference for B over time (interleaving) or each side's CTR so far (A/B)."""
    served = state.get(name)
    with tempfile.TemporaryDirectory() as folder, _plot_lock:
        path = Path(folder) / "preference.png"
        _report(served, experiment, plot=path)
        return Response(path.read_bytes(), media_type="image/png", headers={"Cache-Control": "no-store"})


@router.post(
    "/click",
    responses={409: {"model": m.ErrorOut}, 429: {"model": m.ErrorOut}, 507: {"model": m.ErrorOut}},
)
def click(name: str, req: m.ClickRequest, request: Request, state: State) -> m.ClickOut:
    """Log a click on a result of an experiment's list (the page sends one per mouse click or Enter
    on a result card). 404 for an unknown experiment or impression, 400 for a position outside the
    list, 409 when the experiment has stopped or `item` is not at that position. A position is
    logged once per list (a repeat answers `duplicate: true`); more than 30 clicks a minute on one
    list are 429; a full disk is 507."""
    served = state.get(name)
    request.state.record.update(
        collection=name, experiment=req.experiment, impression=req.impression, position=req.position
    )
    logged = served.experiments.click(req.experiment, req.impression, req.position, req.item)
    request.state.record["item"] = logged["item"]
    return m.ClickOut(
        experiment=req.experiment,
        impression=req.impression,
        position=req.position,
        item=logged["item"],
        logged_at=logged["ts"],
        duplicate=logged["duplicate"],
    )
