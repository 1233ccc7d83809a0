"""Writes (bearer token): items, background embedding jobs, the active version."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from fastapi import APIRouter, Request

from embedscope.errors import ConflictError, EmbedscopeError, NotFoundError
from embedscope.serve import models as m
from embedscope.serve.deps import WRITES, State
from embedscope.serve.routers.items import summaries
from embedscope.store.embedded import now

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
def update_item(
    name: str, item_id: str, fields: dict[str, Any], request: Request, state: State
) -> m.WriteResult:
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


@router.post(f"{C}/versions/{{version}}/embed", dependencies=WRITES, status_code=202)
def embed_version(name: str, version: str, req: m.EmbedRequest, request: Request, state: State) -> m.EmbedJob:
    """Re-embed a version in the background (incremental: only new and changed items are encoded).
    Poll GET /api/jobs/{id}. A new version needs `encoder`; `encoder: hybrid` embeds a sparse and a
    dense version and stores the `hybrid` search recipe fusing them."""
    from embedscope.encoders.registry import create_encoder
    from embedscope.search.recipe import HYBRID, hybrid_shortcut

    served = state.get(name)
    request.state.record.update(collection=name, action="embed", version=version)
    with served.lock:
        existing = {v.name: v for v in served.reader.versions()}.get(version)
    enc_name = req.encoder or (existing.encoder.get("name") if existing else None)
    if enc_name is None:
        raise EmbedscopeError(f"version '{version}' does not exist yet: give the encoder to build it with")
    params = req.params
    if params is None and existing is not None and existing.encoder.get("name") == enc_name:
        params = existing.encoder.get("params")
    # an unknown encoder or parameter is a 4xx now, not a failed job later
    touched = [version]
    if enc_name == HYBRID:
        shortcut = hybrid_shortcut(params)
        touched = [shortcut.sparse, shortcut.dense]
    else:
        create_encoder(enc_name, params)
    if not served.write_lock.acquire(blocking=False):
        raise ConflictError(f"collection '{name}' is busy with another write or embedding job; retry later")
    job = m.EmbedJob(id=uuid.uuid4().hex[:12], collection=name, version=version)
    state.jobs[job.id] = job

    def work() -> None:
        job.status, job.started_at = "running", now()
        try:
            coll = served.writer()

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
            )
            job.result = {
                "encoded": info.stats.get("encoded"),
                "reused": info.stats.get("reused"),
                "count": info.count,
            }
            with served.lock:
                for touched_version in touched:
                    served.reader.load_version(touched_version)  # reload now, so the next query is fast
            job.status = "done"
        except Exception as exc:  # reported through the job, the server keeps running
            job.status, job.error = "failed", str(exc) if isinstance(exc, EmbedscopeError) else repr(exc)
            if isinstance(exc, EmbedscopeError):  # e.g. busy, disk full: said in one line
                log.warning("embedding job %s failed: %s", job.id, exc)
            else:
                log.exception("embedding job %s failed", job.id)
        finally:
            job.finished_at = now()
            served.write_lock.release()
            served.after_write()

    threading.Thread(target=work, name=f"embed-{name}-{version}", daemon=True).start()
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
    return next(c for c in summaries(state) if c.name == name)
