"""One measurement: warm up, wait for a quiet machine, run wrk, read the CPU meters and,
for the entry scenarios, check in the database that every request did what it should.

Entry requests each consume a fresh delivery, so a run needs enough seeded homes. The
warm-up is seeded for an upper bound (the ceiling's rate), and its measured rate sizes
the real run (x1.5, plus a margin). If a run still comes close to the number of homes
(requests past it would be denied: cheap, and they would flatter the figures), it is
repeated once with twice as many homes, and flagged if that fails too.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import loadgen, seed
from bench.loadgen import Load, WrkResult
from bench.procstat import Meter, foreign_load
from bench.rig import Rig

Say = Callable[[str], None]
ENTRIES_PATH = "/v1/courier/entries"
CEILING_PATH = "/ok"
SAFETY = 1.5


@dataclass
class Options:
    duration: int = 6  # wrk takes whole seconds
    warmup: int = 2
    loads: tuple[Load, ...] = (Load("sequential", 1, 1), Load("concurrent", 2, 16))
    quiet_cores: float = 0.25
    quiet_wait: float = 15.0


@dataclass
class Outcome:
    scenario: str
    load: Load
    result: WrkResult
    cpu: dict[str, float]
    foreign_before: float
    seeded: int = 0
    entries_before: int = 0
    entries: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        service_s = self.cpu.get("service_s")
        per_request = (
            round(1000 * service_s / self.result.requests, 3)
            if service_s is not None and self.result.requests
            else None
        )
        wall_s = self.cpu.get("wall_s")
        # How many cores the server kept busy: about 1.0 means its one process (one GIL)
        # is the limit, whatever the machine has left.
        cores = round(service_s / wall_s, 2) if service_s is not None and wall_s else None
        return {
            "scenario": self.scenario,
            "load": self.load.name,
            "threads": self.load.threads,
            "connections": self.load.connections,
            **self.result.to_json(),
            "service_cpu_ms_per_request": per_request,
            "service_cores": cores,
            "cpu": self.cpu,
            "foreign_cores_before": self.foreign_before,
            "seeded_deliveries": self.seeded,
            "entries_before": self.entries_before,
            "entries": self.entries,
            "valid": self.valid,
            "problems": self.problems,
        }


def wait_quiet(meter: Meter, options: Options, say: Say) -> float:
    """Give other work on the machine up to `quiet_wait` seconds to finish."""
    deadline = time.monotonic() + options.quiet_wait
    load = foreign_load(meter)
    if load > options.quiet_cores:
        say(
            f"  other processes use {load:.2f} cores; waiting up to "
            f"{options.quiet_wait:.0f}s for a quieter machine"
        )
    while load > options.quiet_cores and time.monotonic() < deadline:
        load = foreign_load(meter, 1.0)
    return load


def _summary(outcome: Outcome) -> str:
    r = outcome.result
    flag = "" if outcome.valid else "  INVALID: " + "; ".join(outcome.problems)
    foreign = outcome.cpu.get("foreign_cores", 0.0)
    return (
        f"{r.rps:9.1f} req/s  p50 {r.latency_ms['p50']:7.2f} ms  "
        f"p99 {r.latency_ms['p99']:7.2f} ms  ({r.requests} requests, "
        f"foreign load {foreign:.2f} cores){flag}"
    )


# --- the ceiling -------------------------------------------------------------------------


def ceiling(app: str, options: Options, logs: Path, say: Say) -> list[Outcome]:
    from doorstep.demo import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"ceiling-{app}.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.ceiling", app, "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_http(f"{url}{CEILING_PATH}", process)
        meter = Meter(lambda: {"service": process.pid})
        body = seed.entry_body_format() % (0, 0)
        args = [CEILING_PATH, body, "x" * 43]  # a bearer token as long as a real one
        outcomes = []
        for load in options.loads:
            say(f"ceiling  {app:<12} {load.name:<10} ({load.connections} conn) ...")
            loadgen.run(url, script="ceiling.lua", args=args, load=load, seconds=options.warmup)
            foreign = wait_quiet(meter, options, say)
            before = meter.snapshot()
            result = loadgen.run(
                url, script="ceiling.lua", args=args, load=load, seconds=options.duration
            )
            outcome = Outcome(
                f"ceiling-{app}", load, result, Meter.usage(before, meter.snapshot()), foreign
            )
            if result.failed:
                outcome.problems.append(f"wrk errors {result.errors}")
            say(f"         {_summary(outcome)}")
            outcomes.append(outcome)
        return outcomes
    finally:
        process.terminate()
        process.wait(10)


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


# --- the entry scenarios -----------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str  # "decision" or "whole-path"
    query: str  # "" or "?wait=unlocked"
    expected_state: str  # what every entry must reach
    hubs: bool  # the hub simulator must answer


DECISION = Scenario("decision", "", "authorized", hubs=False)
WHOLE_PATH = Scenario("whole-path", "?wait=unlocked", "unlocked", hubs=True)


def entries(
    rig: Rig,
    scenario: Scenario,
    load: Load,
    options: Options,
    *,
    bound_rps: float,
    say: Say,
) -> Outcome:
    """Warm up, then measure; `bound_rps` is an upper bound on the rate (for seeding)."""
    say(f"{scenario.name:<9}{'':<14}{load.name:<10} ({load.connections} conn) ...")
    meter = Meter(rig.pids)
    warm_block = rig.allocate(int(bound_rps * options.warmup) + 50, hubs=scenario.hubs)
    warm = drive(rig, scenario, load, warm_block, options.warmup)
    rig.settle()
    budget = int(max(warm.rps, 50.0) * SAFETY * options.duration) + 200
    outcome: Outcome | None = None
    for _attempt in range(2):
        block = rig.allocate(budget, hubs=scenario.hubs)
        foreign = wait_quiet(meter, options, say)
        states_before = rig.entry_states()
        before = meter.snapshot()
        result = drive(rig, scenario, load, block, options.duration)
        cpu = Meter.usage(before, meter.snapshot())
        states = _difference(rig.settle(), states_before)
        outcome = Outcome(
            scenario.name,
            load,
            result,
            cpu,
            foreign,
            seeded=budget,
            entries_before=sum(states_before.values()),
            entries=states,
        )
        _check(outcome, scenario)
        # wrk threads take every other request number and need not run at the same pace,
        # so a run close to its budget may have stepped past the seeded homes (denied).
        ran_out = result.requests > 0.9 * budget or any(k.startswith("denied") for k in states)
        if not ran_out:
            break
        say(f"         ran out of seeded deliveries ({result.requests} for {budget}); again")
        budget = max(budget, result.requests) * 2
    assert outcome is not None
    say(f"         {_summary(outcome)}")
    return outcome


def drive(rig: Rig, scenario: Scenario, load: Load, block: seed.Block, seconds: int) -> WrkResult:
    args = [
        ENTRIES_PATH + scenario.query,
        seed.entry_body_format(),
        str(rig.tokens_file),
        str(block.start),
        str(load.threads),
    ]
    return loadgen.run(rig.url, script="entries.lua", args=args, load=load, seconds=seconds)


def _difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    changed = {key: after.get(key, 0) - before.get(key, 0) for key in after.keys() | before}
    return {key: value for key, value in sorted(changed.items()) if value}


def _check(outcome: Outcome, scenario: Scenario) -> None:
    result, states = outcome.result, outcome.entries
    if result.failed:
        outcome.problems.append(f"wrk errors {result.errors}")
    if result.requests > outcome.seeded:
        outcome.problems.append(f"{result.requests} requests for {outcome.seeded} deliveries")
    reached = states.get(scenario.expected_state, 0)
    if reached < result.requests:
        outcome.problems.append(
            f"only {reached} of {result.requests} entries reached {scenario.expected_state}"
        )
    others = {k: v for k, v in states.items() if k != scenario.expected_state}
    if others:
        outcome.problems.append(f"other entry states: {others}")
