"""Prometheus metrics for the operator: `GET /metrics`, off unless `metrics_token` is set.

Counted as it happens, in this process:

    doorstep_entry_decisions_total{purpose, state, reason}   each entry request's answer
                                  (purpose delivery | visit; state authorized | denied |
                                  awaiting_approval; reason the denial's code, or "")
    doorstep_hub_messages_total{kind}   hub messages received (events, reply, status,
                                  reported, camera)
    doorstep_hub_messages_dropped_total{kind, reason}   of those, dropped unread (reason
                                  rate: over the hub's message budget, `hublink.link`)
    doorstep_writer_batch_jobs    histogram: jobs per writer transaction
    doorstep_writer_batch_seconds histogram: a writer transaction, BEGIN to COMMIT

Read from the database at each scrape (the same from any `serve` process):

    doorstep_hubs{state}          enrolled hubs, online or offline
    doorstep_open_entries{state}  entries not yet ended, by state
    doorstep_outbox_pending       notifications waiting to be sent
    doorstep_outbox_oldest_pending_seconds   how long the oldest of them has waited
    doorstep_audit_records        length of the audit chain

No label carries an id, a name or an address. The endpoint asks for
`Authorization: Bearer <metrics_token>`, compared in constant time; without the setting
it does not exist (404), so nothing about the service is public by default.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from doorstep.access.models import OPEN_STATES
from doorstep.clock import Clock
from doorstep.security import token_digest

_BATCH_JOBS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_BATCH_SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """This process's instruments and the scrape-time database figures, on a registry of
    their own (so several apps in one process, as in the tests, do not collide)."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._decisions = Counter(
            "doorstep_entry_decisions",
            "Entry requests answered, by purpose, resulting state and denial reason.",
            ("purpose", "state", "reason"),
            registry=self.registry,
        )
        self._hub_messages = Counter(
            "doorstep_hub_messages",
            "Messages received from hubs, by kind.",
            ("kind",),
            registry=self.registry,
        )
        self._hub_messages_dropped = Counter(
            "doorstep_hub_messages_dropped",
            "Messages from hubs dropped unread, by kind and reason.",
            ("kind", "reason"),
            registry=self.registry,
        )
        self._batch_jobs = Histogram(
            "doorstep_writer_batch_jobs",
            "Jobs per writer transaction.",
            buckets=_BATCH_JOBS,
            registry=self.registry,
        )
        self._batch_seconds = Histogram(
            "doorstep_writer_batch_seconds",
            "Writer transactions, BEGIN to COMMIT.",
            buckets=_BATCH_SECONDS,
            registry=self.registry,
        )
        self.registry.register(_DatabaseFigures(sessions, clock))

    def decided(self, purpose: str, state: str, reason: str | None) -> None:
        self._decisions.labels(purpose, state, reason or "").inc()

    def hub_message(self, kind: str, dropped: str | None = None) -> None:
        """One message received from a hub; `dropped` says why it was dropped unread."""
        self._hub_messages.labels(kind).inc()
        if dropped is not None:
            self._hub_messages_dropped.labels(kind, dropped).inc()

    def writer_batch(self, jobs: int, seconds: float) -> None:
        self._batch_jobs.observe(jobs)
        self._batch_seconds.observe(seconds)


def token_matches(configured: str, given_header: str) -> bool:
    """`Authorization: Bearer <token>` against the configured token, in constant time
    (digests of equal length, whatever was sent)."""
    scheme, _, given = given_header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token_digest(given.strip()), token_digest(configured))


class _DatabaseFigures(Collector):
    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def describe(self) -> list[Metric]:
        return []  # nothing is read at registration (the schema may not exist yet)

    def collect(self) -> Iterator[Metric]:
        with self._sessions() as session:
            hubs: dict[str, int] = dict(
                session.execute(
                    text(
                        "SELECT CASE WHEN online THEN 'online' ELSE 'offline' END, COUNT(*)"
                        " FROM hubs WHERE claimed_at IS NOT NULL GROUP BY 1"
                    )
                ).all()
            )
            open_states = ", ".join(f"'{state}'" for state in OPEN_STATES)
            entries: dict[str, int] = dict(
                session.execute(
                    text(
                        f"SELECT state, COUNT(*) FROM entries WHERE state IN ({open_states})"  # noqa: S608
                        " GROUP BY state"
                    )
                ).all()
            )
            pending, oldest = session.execute(
                text("SELECT COUNT(*), MIN(created_at) FROM outbox WHERE state = 'pending'")
            ).one()
            audit = session.execute(text("SELECT seq FROM audit_head WHERE id = 1")).scalar()
        yield _gauge("doorstep_hubs", "Enrolled hubs, by state.", "state",
                     {state: hubs.get(state, 0) for state in ("online", "offline")})  # fmt: skip
        yield _gauge("doorstep_open_entries", "Entries not yet ended, by state.", "state",
                     {state: entries.get(state, 0) for state in OPEN_STATES})  # fmt: skip
        yield GaugeMetricFamily(
            "doorstep_outbox_pending", "Notifications waiting to be sent.", value=pending
        )
        yield GaugeMetricFamily(
            "doorstep_outbox_oldest_pending_seconds",
            "How long the oldest notification waiting to be sent has waited.",
            value=self._age(oldest),
        )
        yield GaugeMetricFamily(
            "doorstep_audit_records", "Length of the audit chain.", value=audit or 0
        )

    def _age(self, created: object) -> float:
        if created is None:
            return 0.0
        if not isinstance(created, datetime):
            created = datetime.fromisoformat(str(created))
        now = self._clock.now()
        if created.tzinfo is None:
            now = now.replace(tzinfo=None)
        return max(0.0, (now - created).total_seconds())


def _gauge(name: str, documentation: str, label: str, values: dict[str, int]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=(label,))
    for key, value in values.items():
        family.add_metric((key,), value)
    return family
