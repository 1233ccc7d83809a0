"""The one timestamp: UTC, ISO 8601, what every record embedscope writes carries (version records,
embedding jobs, experiments and their events, the query log, the recorded recommendation choice)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal


def now(timespec: Literal["seconds", "milliseconds"] = "seconds") -> str:
    """The time now, e.g. "2026-12-05T08:21:07+00:00": seconds for records, milliseconds for events."""
    return datetime.now(UTC).isoformat(timespec=timespec)
