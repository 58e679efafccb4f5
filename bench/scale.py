"""The entry decision at scale: does a visit's decision slow down as the database grows?

Two SQLite databases, migrated as `doorstep serve` migrates them, are filled with
generated data (fast `executemany` inserts, same schema and indexes):

| | homes | provider organisations | workers |
|---|---|---|---|
| small | 10,000 | 500 | 10,000 |
| large | 1,000,000 | 50,000 | 1,000,000 |

Each home has its resident, hub (online), front door and one provider appointment (a
`service` access grant covering the run) assigned to a worker who belongs to that
provider; each appointment already has one finished entry in its history.

Then `samples` workers picked at random on each database (the same count on both) ask
to enter on their appointment, one after another, alternating between the two databases
(so that whatever else the machine does weighs on both alike), after a warm-up, through
the real engine
(`access.visits.decide_visit`) run as a job on the real writer thread (`doorstep.sql.
Writer`): token lookup, every check, the entry row, the signed grant, the audit record,
the outbox rows, the commit. Timed from submitting the job to its committed result.
Proof of possession is off (no phone keys are generated); the hub is not involved.

Target: the large database's p50 and p99 at most 1.2 times the small one's.
`python -m bench.scale [--samples N] [--large-homes N]` prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from doorstep import db
from doorstep.access import visits
from doorstep.protocol.grants import GrantSigner
from doorstep.security import token_digest
from doorstep.settings import EntrySettings
from doorstep.sql import Writer

TARGET_RATIO = 1.2
SIZES = {"small": (10_000, 500, 10_000), "large": (1_000_000, 50_000, 1_000_000)}
BATCH = 50_000
_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how `doorstep.sql.Tx` stores times on SQLite

Say = Callable[[str], None]


def populate(path: Path, homes: int, providers: int, workers: int, say: Say) -> None:
    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    engine.dispose()
    now = datetime.now(UTC)
    created = now.strftime(_TIME)
    window = ((now - timedelta(days=365)).strftime(_TIME),
              (now + timedelta(days=365)).strftime(_TIME))  # fmt: skip
    past = (now - timedelta(days=1)).strftime(_TIME)
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")  # generation only; the bench uses the default

    def fill(table: str, columns: str, rows: Iterator[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" * len(columns.split(",")))
        sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608 - constants
        batch: list[tuple[Any, ...]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= BATCH:
                connection.executemany(sql, batch)
                batch.clear()
        if batch:
            connection.executemany(sql, batch)
        connection.commit()

    started = time.monotonic()
    say(f"  generating {homes:,} homes, {providers:,} providers, {workers:,} workers")
    fill("users", "id, email, name, password_hash, role, active, created_at", (
        (f"r{i}", f"r{i}@bench.test", "Resident", "!", "resident", 1, created)
        for i in range(homes)))  # fmt: skip
    fill("users", "id, email, name, password_hash, role, active, created_at", (
        (f"w{i}", f"w{i}@bench.test", "Worker", "!", "worker", 1, created)
        for i in range(workers)))  # fmt: skip
    fill("homes", "id, owner_id, name, address, latitude, longitude, geofence_m, timezone,"
         " in_home_enabled, created_at, allowed_weekdays, approval_mode,"
         " approval_timeout_seconds, pet_notes, placement_notes", (
        (f"h{i}", f"r{i}", "Home", "1 Street", 51.5, -0.12, 75.0, "Europe/London", 1, created,
         127, "auto", 120, "", "") for i in range(homes)))  # fmt: skip
    fill("hubs", "id, home_id, claimed_at, online, created_at", (
        (f"hub-{i:07d}", f"h{i}", created, 1, created) for i in range(homes)))  # fmt: skip
    fill("access_points", "id, home_id, hub_id, slug, name, kind, created_at", (
        (f"ap{i}", f"h{i}", f"hub-{i:07d}", "front", "Front", "door", created)
        for i in range(homes)))  # fmt: skip
    fill("providers", "id, name, active, created_at", (
        (f"p{j}", f"Provider {j}", 1, created) for j in range(providers)))  # fmt: skip
    fill("provider_members", "provider_id, user_id, role, active, created_at", (
        (f"p{k % providers}", f"w{k}", "worker", 1, created) for k in range(workers)))  # fmt: skip
    # Home i's appointment: provider i % providers, worker i % workers re-mapped to one of
    # that provider's workers (worker k belongs to provider k % providers).
    fill("access_grants", "id, home_id, access_point_id, purpose, method, label, grantee_id,"
         " provider_id, kind, timezone, starts_at, ends_at, windows, require_geofence, notes,"
         " created_by, created_at", (
        (f"g{i}", f"h{i}", f"ap{i}", "service", "app", "Cleaning", f"w{_worker(i, workers)}",
         f"p{_worker(i, workers) % providers}", "range", "Europe/London", window[0], window[1],
         "[]", 0, "", f"r{i}", created) for i in range(homes)))  # fmt: skip
    fill("entries", "id, home_id, access_point_id, hub_id, courier_id, state, created_at,"
         " updated_at, unlocked_at, done_at, purpose, method, grant_id", (
        (f"e{i}", f"h{i}", f"ap{i}", f"hub-{i:07d}", f"w{_worker(i, workers)}", "done", past,
         past, past, past, "service", "app", f"g{i}") for i in range(homes)))  # fmt: skip
    connection.execute("ANALYZE")
    connection.commit()
    connection.close()
    say(f"  generated in {time.monotonic() - started:.0f} s ({path.stat().st_size >> 20} MiB)")


def _worker(home: int, workers: int) -> int:
    return home % workers


class _Bench:
    """One database's writer and its sampled appointments, ready to decide visits."""

    def __init__(self, path: Path, homes: int, workers: int, count: int, seed: int) -> None:
        self.chosen = random.Random(seed).sample(range(homes), count)
        now = datetime.now(UTC)
        self.tokens = {i: f"bench-token-{i}" for i in self.chosen}
        connection = sqlite3.connect(path)
        connection.executemany(
            "INSERT INTO access_tokens (digest, principal_kind, principal_id, expires_at,"
            " created_at) VALUES (?, 'user', ?, ?, ?)",
            [(token_digest(self.tokens[i]), f"w{_worker(i, workers)}",
              (now + timedelta(hours=1)).strftime(_TIME), now.strftime(_TIME))
             for i in self.chosen],
        )  # fmt: skip
        connection.commit()
        connection.close()
        self.engine = db.make_engine(f"sqlite:///{path}")
        self.writer = Writer(self.engine)
        self.writer.start()
        self.settings = EntrySettings(require_proof_of_possession=False)
        self.signer = GrantSigner(Ed25519PrivateKey.generate())
        self.timings: list[float] = []
        self.outcomes: dict[str, int] = {}

    def decide(self, index: int, *, keep: bool) -> None:
        home = self.chosen[index]
        request, token = visits.VisitRequest(f"g{home}"), self.tokens[home]

        def job(tx: Any) -> Any:
            return visits.decide_visit(tx, token=token, request=request, now=datetime.now(UTC),
                                       settings=self.settings, signer=self.signer)  # fmt: skip

        started = time.perf_counter()
        decision = self.writer.submit(job).result(timeout=30)
        elapsed = time.perf_counter() - started
        if keep:
            self.timings.append(elapsed)
            state = str(decision.entry.state if decision.authorized else decision.entry.reason)
            self.outcomes[state] = self.outcomes.get(state, 0) + 1

    def close(self) -> dict[str, Any]:
        self.writer.stop()
        self.engine.dispose()
        ordered = sorted(self.timings)
        return {
            "samples": len(ordered),
            "outcomes": self.outcomes,
            "p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
        }


def run(
    samples: int = 3000, large_homes: int | None = None, say: Say = print, seed: int = 7,
    warmup: int = 200,
) -> dict[str, Any]:  # fmt: skip
    """Populate both databases, then alternate one visit on each, so that whatever else
    the machine does at a moment weighs on both alike."""
    sizes = dict(SIZES)
    if large_homes is not None:
        scale = large_homes / SIZES["large"][0]
        sizes["large"] = (large_homes, max(1, int(50_000 * scale)), large_homes)
    result: dict[str, Any] = {"sizes": {}, "method": "writer job, sequential, alternating; SQLite"}
    with tempfile.TemporaryDirectory(prefix="doorstep-scale-") as work:
        benches: dict[str, _Bench] = {}
        for name, (homes, providers, workers) in sizes.items():
            say(f"scale: {name}")
            path = Path(work) / f"{name}.db"
            populate(path, homes, providers, workers, say)
            benches[name] = _Bench(path, homes, workers, warmup + samples, seed)
        say(f"scale: {warmup} warm-up and {samples} measured visits on each, alternating")
        for index in range(warmup + samples):
            for bench in benches.values():
                bench.decide(index, keep=index >= warmup)
        for name, (homes, providers, workers) in sizes.items():
            figures = benches[name].close()
            say(f"  {name}: decision p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms"
                f" ({figures['outcomes']})")  # fmt: skip
            result["sizes"][name] = {"homes": homes, "providers": providers,
                                     "workers": workers, **figures}  # fmt: skip
    small, large = result["sizes"]["small"], result["sizes"]["large"]
    result["ratio_p50"] = round(large["p50_ms"] / small["p50_ms"], 3)
    result["ratio_p99"] = round(large["p99_ms"] / small["p99_ms"], 3)
    result["target_ratio"] = TARGET_RATIO
    result["pass"] = max(result["ratio_p50"], result["ratio_p99"]) <= TARGET_RATIO
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--large-homes", type=int, default=None)
    args = parser.parse_args()
    print(json.dumps(run(args.samples, args.large_homes), indent=2))


if __name__ == "__main__":
    main()
