"""Writes (bearer token): items, background embedding jobs, the active version."""

from __future__ import annotations

import logging
import threading
import uuid
from contextlib import ExitStack

from fastapi import APIRouter, Request

from embedscope.clock import now
from embedscope.collection import Collection
from embedscope.errors import ConflictError, EmbedscopeError, NotFoundError
from embedscope.jsontypes import JSONObject
from embedscope.serve import models as m
from embedscope.serve.deps import WRITES, State

log = logging.getLogger("embedscope.serve")
router = APIRouter(tags=["write"])
C = "/api/collections/{name}"


@router.post(f"{C}/items", dependencies=WRITES)
def upsert_items(name: str, req: m.UpsertRequest, request: Request, state: State) -> m.WriteResult:
    """Add or update items (records shaped like the ingested file: id field, text fields, metadata)."""
    served = state.get(name)
    request.state.record.update(collection=name, action="upsert", records=len(req.records))
    with served.writing() as coll:
        counts = coll.upsert(req.records)
    served.after_write()
    request.state.record["counts"] = counts
    return m.WriteResult(collection=name, counts=counts)


@router.put(f"{C}/items/{{item_id:path}}", dependencies=WRITES)
def update_item(name: str, item_id: str, fields: JSONObject, request: Request, state: State) -> m.WriteResult:
    """Update one item: the given fields replace stored ones, fields not given are kept; the text is
    rebuilt from the stored fields it is made of (a template's fields). 400 names the fields to send
    when a field is not one the collection keeps, or the text cannot be rebuilt."""
    served = state.get(name)
    request.state.record.update(collection=name, action="update", item=item_id)
    with served.writing() as coll:
        counts = coll.update(item_id, fields)
    served.after_write()
    return m.WriteResult(collection=name, counts=counts)


@router.delete(f"{C}/items/{{item_id:path}}", dependencies=WRITES)
def delete_item(name: str, item_id: str, request: Request, state: State) -> m.WriteResult:
    served = state.get(name)
    request.state.record.update(collection=name, action="delete", item=item_id)
    with served.writing() as coll:
        coll.get(item_id)  # 404 for an unknown id rather than a silent "0 deleted"
        deleted = coll.delete([item_id])
    served.after_write()
    return m.WriteResult(collection=name, counts={"deleted": deleted})


@router.post(
    f"{C}/versions/{{version}}/embed",
    dependencies=WRITES,
    status_code=202,
    responses={409: {"model": m.ErrorOut}, 507: {"model": m.ErrorOut}},
)
def embed_version(name: str, version: str, req: m.EmbedRequest, request: Request, state: State) -> m.EmbedJob:
    """Re-embed a version in the background (incremental: only new and changed items are encoded).
    Poll GET /api/jobs/{id}. A new version needs `encoder`; `encoder: hybrid` embeds a sparse and a
    dense version and stores the `hybrid` search recipe fusing them. Everything the job can know
    before encoding (version name, encoder, parameters, index, an empty collection) is checked
    before it is accepted (4xx), and so is the collection's writer lock: 409 while another
    process (a CLI `embed`) or job holds it."""
    served = state.get(name)
    request.state.record.update(collection=name, action="embed", version=version)
    existing = {v.name: v for v in served.reader.versions()}.get(version)
    enc_name = req.encoder or (existing.encoder.get("name") if existing else None)
    if enc_name is None:
        raise EmbedscopeError(f"version '{version}' does not exist yet: give the encoder to build it with")
    params = req.params
    if params is None and existing is not None and existing.encoder.get("name") == enc_name:
        params = existing.encoder.get("params")
    touched = served.reader.check_embed(
        enc_name, params, version=version, index=req.index, document=req.document
    )
    if not served.write_lock.acquire(blocking=False):
        raise ConflictError(f"collection '{name}' is busy with another write or embedding job; retry later")
    job = m.EmbedJob(id=uuid.uuid4().hex[:12], collection=name, version=version)
    started, refused = threading.Event(), []

    def work() -> None:
        try:
            with ExitStack() as held:
                try:  # the store's writer lock, at once: held by another process, the job is a 409
                    coll = served.writer()
                    held.enter_context(coll.writing(wait=0))
                except BaseException as exc:
                    refused.append(exc)
                    return
                finally:
                    started.set()
                _run(coll)
        finally:
            served.write_lock.release()  # after the store's lock, so the next job finds it free
            if not refused:
                served.after_write()

    def _run(coll: Collection) -> None:
        job.status, job.started_at = "running", now()
        try:

            def progress(done: int, total: int) -> None:
                job.done, job.total = done, total

            info = coll.embed(
                enc_name,
                params,
                version=version,
                index=req.index,
                refit=req.refit,
                activate=req.activate,
                progress=progress,
                document=req.document,
            )
            job.result = {
                "encoded": info.stats.get("encoded"),
                "reused": info.stats.get("reused"),
                "count": info.count,
            }
            for touched_version in touched:
                served.reader.load_version(touched_version)  # reload now, so the next query is fast
            job.status = "done"
        except Exception as exc:  # reported through the job, the server keeps running
            job.status = "failed"
            job.error = (
                state.public(str(exc))
                if isinstance(exc, EmbedscopeError)
                else f"internal error ({exc.__class__.__name__}); see the server log"
            )
            if isinstance(exc, EmbedscopeError):  # e.g. disk full: said in one line
                log.warning("embedding job %s failed: %s", job.id, exc)
            else:
                log.exception("embedding job %s failed", job.id)
        finally:
            job.finished_at = now()

    threading.Thread(target=work, name=f"embed-{name}-{version}", daemon=True).start()
    started.wait()
    if refused:
        raise refused[0]
    state.jobs[job.id] = job
    return job.model_copy()


@router.get("/api/jobs/{job_id}")
def get_job(job_id: str, state: State) -> m.EmbedJob:
    job = state.jobs.get(job_id)
    if job is None:
        raise NotFoundError(f"no job '{job_id}'")
    return job.model_copy()


@router.post(f"{C}/versions/{{version}}/activate", dependencies=WRITES)
def activate(name: str, version: str, request: Request, state: State) -> m.CollectionSummary:
    served = state.get(name)
    request.state.record.update(collection=name, action="activate", version=version)
    with served.writing() as coll:
        coll.activate(version)
    served.after_write()
    return next(c for c in state.summaries() if c.name == name)
