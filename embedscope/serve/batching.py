"""Micro-batching of query encoding: concurrent requests for the same version are encoded in one call.

A transformer encodes 8 short queries in one batch in little more time than one, while 8 separate
calls on a 2-core CPU contend for the cores (bench/bench_serve.py, concurrency 8). A lone request is
encoded at once (a batch of one), so latency at low load does not change.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from embedscope.encoders.base import Vectors

EncodeFn = Callable[[Sequence[str]], Vectors]


def _row(out: Vectors, i: int) -> Vectors:
    return out[i : i + 1].copy()  # a copy: do not keep the whole batch alive in the query cache


class QueryBatcher:
    """One worker thread that drains the queue and encodes what it finds as one batch."""

    def __init__(
        self, encode: EncodeFn, max_batch: int = 32, observe: Callable[[int], None] | None = None
    ) -> None:
        self._encode, self.max_batch, self._observe = encode, max_batch, observe
        self._queue: queue.Queue[tuple[str, Future[Vectors]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="query-batcher", daemon=True)
        self._thread.start()

    def encode(self, text: str) -> Vectors:
        """The text's query vector as a 1-row matrix (blocks until its batch is encoded)."""
        fut: Future[Vectors] = Future()
        self._queue.put((text, fut))
        return fut.result()

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(nxt)
            try:
                out = self._encode([text for text, _ in batch])
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
                for _, fut in batch:
                    fut.set_exception(exc)
                continue
            if self._observe:
                self._observe(len(batch))
            for i, (_, fut) in enumerate(batch):
                fut.set_result(_row(out, i))
