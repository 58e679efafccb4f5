"""The report: targets against measurements, every run, and how the machine was.

Written as `bench/reports/<UTC timestamp>.json` and `.md`, and copied to `latest.json`
and `latest.md`. The JSON holds everything; the Markdown is for people.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

REPORTS_DIR = Path(__file__).parent / "reports"


@dataclass(frozen=True)
class Target:
    name: str
    scenario: str
    load: str
    metric: str  # "rps", "p50", "p99"
    limit: float
    at_least: bool

    def measured(self, runs: list[dict[str, Any]]) -> float | None:
        for run in runs:
            if run["scenario"] == self.scenario and run["load"] == self.load:
                return run["rps"] if self.metric == "rps" else run["latency_ms"][self.metric]
        return None

    def passes(self, value: float) -> bool:
        return value >= self.limit if self.at_least else value <= self.limit


TARGETS = (
    Target("decision, 16 concurrent: throughput", "decision", "concurrent", "rps", 3000, True),
    Target("decision, 16 concurrent: p99 latency", "decision", "concurrent", "p99", 20, False),
    Target("whole path, 16 concurrent: throughput", "whole-path", "concurrent", "rps", 1500, True),
    Target("whole path, 16 concurrent: p99 latency", "whole-path", "concurrent", "p99", 25, False),
    Target("whole path, sequential: p50 latency", "whole-path", "sequential", "p50", 1.5, False),
)
GRANT_LIMIT_BYTES = 256


def evaluate(report: dict[str, Any]) -> list[dict[str, Any]]:
    runs = report["runs"]
    rows = []
    for target in TARGETS:
        value = target.measured(runs)
        unit = "req/s" if target.metric == "rps" else "ms"
        valid = all(
            r["valid"]
            for r in runs
            if r["scenario"] == target.scenario and r["load"] == target.load
        )
        rows.append(
            {
                "target": target.name,
                "limit": f"{'>=' if target.at_least else '<='} {target.limit:g} {unit}",
                "measured": None if value is None else f"{value:g} {unit}",
                "result": _verdict(value, target.passes, valid),
            }
        )
    video = report.get("video")
    if video is not None:
        cpu, ready = video["recording"]["recorder_cpu_percent"], video["clip_ready"]["p95_s"]
        rows += [
            {
                "target": "video: recorder CPU per camera (720p, 15 fps, stream copy)",
                "limit": "<= 2 % of a core",
                "measured": f"{cpu:g} %",
                "result": _verdict(cpu, lambda v: v <= 2.0, video["valid"]),
            },
            {
                "target": "video: window end to playable clip, p95",
                "limit": "<= 2 s",
                "measured": f"{ready:g} s",
                "result": _verdict(ready, lambda v: v <= 2.0, video["valid"]),
            },
        ]
        service = video.get("playable_at_service") or {}
        relock = service.get("relock_to_playable_p95_s")
        if relock is not None:
            rows.append(
                {
                    "target": "video: verified relock to clip playable at the service, p95",
                    "limit": "<= 2 s",
                    "measured": f"{relock:g} s",
                    "result": _verdict(relock, lambda v: v <= 2.0, video["valid"]),
                }
            )
    courier = report.get("courier")
    if courier is not None:
        for key, limit, name in (
            ("tap_to_bolt_p50_s", 1.2, "courier tap to bolt retracted (1 s motor), p50"),
            ("tap_to_bolt_p99_s", 1.5, "courier tap to bolt retracted (1 s motor), p99"),
            ("camera_loss_to_alert_p99_s", 3.0, "camera loss to the resident's alert, p99"),
        ):
            value = courier["targets"][key]
            rows.append(
                {
                    "target": name,
                    "limit": f"<= {limit:g} s",
                    "measured": None if value is None else f"{value:g} s",
                    "result": _verdict(value, lambda v, lim=limit: v <= lim, courier["valid"]),
                }
            )
    revocation = report.get("revocation")
    if revocation is not None:
        value = revocation["targets"]["revoke_to_enforced_p99_s"]
        rows.append(
            {
                "target": "guest code revoked to enforced at the hub, p99",
                "limit": f"<= {1.0:g} s",
                "measured": None if value is None else f"{value:g} s",
                "result": _verdict(value, lambda v: v <= 1.0, revocation["valid"]),
            }
        )
    scale = report.get("scale")
    if scale is not None:
        for key, name in (("ratio_p50", "p50"), ("ratio_p99", "p99")):
            value = scale[key]
            rows.append(
                {
                    "target": f"visit decision at 1M homes vs 10k homes, {name} ratio",
                    "limit": f"<= {scale['target_ratio']:g}x",
                    "measured": f"{value:g}x",
                    "result": _verdict(value, lambda v: v <= scale["target_ratio"], True),
                }
            )
    grant = report.get("grant", {}).get("bytes")
    rows.append(
        {
            "target": "grant token size",
            "limit": f"<= {GRANT_LIMIT_BYTES} bytes",
            "measured": None if grant is None else f"{grant} bytes",
            "result": _verdict(grant, lambda v: v <= GRANT_LIMIT_BYTES, True),
        }
    )
    return rows


def _verdict(value: float | None, passes: Callable[[float], bool], valid: bool) -> str:
    if value is None:
        return "NOT RUN"
    if not valid:
        return "INVALID RUN"
    return "PASS" if passes(value) else "MISS"


def with_ratios(report: dict[str, Any]) -> None:
    """Add each run's throughput and p50 as a fraction of the ceilings at the same load."""
    ceilings = {
        (r["scenario"], r["load"]): r
        for r in report["runs"]
        if r["scenario"].startswith("ceiling-")
    }
    for run in report["runs"]:
        for app in ("starlette", "fastapi"):
            ceiling = ceilings.get((f"ceiling-{app}", run["load"]))
            if ceiling and ceiling["rps"]:
                run[f"rps_vs_{app}"] = round(run["rps"] / ceiling["rps"], 3)


def write(report: dict[str, Any], stamp: str, directory: Path = REPORTS_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / f"{stamp}.json", directory / f"{stamp}.md"
    json_path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    md_path.write_text(markdown(report))
    shutil.copyfile(json_path, directory / "latest.json")
    shutil.copyfile(md_path, directory / "latest.md")
    return md_path


# --- Markdown ------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    parts = [
        f"# Doorstep benchmark, {report['started_at']}\n",
        _machine(report),
        "## Targets\n",
        _table(
            ["target", "target value", "measured", "result"],
            [
                [t["target"], t["limit"], t["measured"] or "-", f"**{t['result']}**"]
                for t in report["targets"]
            ],
        ),
        "## Every run\n",
        _runs(report["runs"]),
        _notes_on_runs(report),
        "## What the requests did\n",
        _entries(report["runs"]),
        "## CPU during each measured run\n",
        _cpu(report["runs"]),
        "## Grant token\n",
        _grant(report),
        "## Hub simulator\n",
        _hubsim(report),
    ]
    if "courier" in report:
        parts += ["## Courier and resident latencies\n", "```json\n" + orjson.dumps(
            report["courier"], option=orjson.OPT_INDENT_2).decode() + "\n```\n"]  # fmt: skip
    for key, title in (("revocation", "Revocation"), ("scale", "Visit decision at scale")):
        if key in report:
            parts += [f"## {title}\n", "```json\n" + orjson.dumps(
                report[key], option=orjson.OPT_INDENT_2).decode() + "\n```\n"]  # fmt: skip
    if "video" in report:
        parts += ["## Video\n", "```json\n" + orjson.dumps(report["video"],
                  option=orjson.OPT_INDENT_2).decode() + "\n```\n"]  # fmt: skip
    for name, profile in report.get("profiles", {}).items():
        parts.append(_profile(name, profile))
    parts.append(_method(report))
    return "\n".join(parts)


def _machine(report: dict[str, Any]) -> str:
    env = report["environment"]
    options = report["options"]
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    return (
        f"- **Cores**: `os.cpu_count()` = {env['cpu_count']}, affinity = "
        f"{env['affinity']} ({len(env['affinity'])} usable); {env['cpu_model']}\n"
        f"- **Python** {env['python']} ({env['implementation']}), {env['platform']}\n"
        f"- **Packages**: {packages}\n"
        f"- **Tools**: {env['wrk']}; {env['mosquitto']}\n"
        f"- **Source**: {env['source']}\n"
        f"- **Load average at start**: {env['loadavg']}\n"
        f"- **Idle cores**: {env.get('cpuidle', 'unknown')}\n"
        f"- **Runs**: {options['warmup']:g} s warm-up then {options['duration']:g} s "
        f"measured per row; sequential = `wrk -t1 -c1`, concurrent = "
        f"`wrk -t{options['concurrent_threads']} -c{options['concurrency']}`. wrk, the "
        "service, Mosquitto and the hub simulator all share these cores.\n"
        + _probes(report.get("probes"))
    )


def _probes(probes: dict[str, float] | None) -> str:
    """The machine's speed at the whole path's basic steps (`machine.speed_probes`)."""
    if not probes:
        return ""
    return (
        f"- **Machine speed** (measured before the runs): a process woken over a socket "
        f"and answering, round trip {probes['wake_round_trip_us']:g} us, "
        f"{probes['wake_cpu_us']:g} us of CPU; Ed25519 sign {probes['ed25519_sign_us']:g} "
        f"us, verify {probes['ed25519_verify_us']:g} us; a Python loop of 1,000 additions "
        f"{probes['python_loop_us']:g} us. A whole-path entry crosses a process boundary "
        "about ten times, and makes two signatures and checks two, so these set much of "
        "its cost: compare them before comparing reports from different machines "
        f"(foreign load then: {probes.get('foreign_cores', 0.0):.2f} cores).\n"
    )


def _runs(runs: list[dict[str, Any]]) -> str:
    rows = []
    for run in runs:
        lat = run["latency_ms"]
        rows.append(
            [
                run["scenario"],
                f"{run['load']} ({run['connections']})",
                f"{run['rps']:,.0f}",
                f"{lat['p50']:.2f}",
                f"{lat['p90']:.2f}",
                f"{lat['p99']:.2f}",
                f"{lat['max']:.1f}",
                _ratio(run.get("rps_vs_starlette")),
                _ratio(run.get("rps_vs_fastapi")),
                _number(run.get("service_cpu_ms_per_request"), 3),
                _number(run.get("service_cores"), 2),
                f"{run['cpu'].get('foreign_cores', 0):.2f}",
                "yes" if run["valid"] else "**NO**",
            ]
        )
    return _table(
        [
            "scenario",
            "load (conns)",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "x Starlette",
            "x FastAPI",
            "server CPU ms/req",
            "server cores",
            "foreign cores",
            "valid",
        ],
        rows,
    )


def _notes_on_runs(report: dict[str, Any]) -> str:
    lines = []
    for run in report["runs"]:
        if run["problems"]:
            lines.append(f"- {run['scenario']} {run['load']}: " + "; ".join(run["problems"]))
    noisy = [r for r in report["runs"] if r["cpu"].get("foreign_cores", 0) > 0.25]
    if noisy:
        lines.append(
            "- Other processes used more than a quarter of a core during "
            + ", ".join(f"{r['scenario']} {r['load']}" for r in noisy)
            + ": those figures are pessimistic."
        )
    return ("\n".join(lines) + "\n") if lines else ""


def _entries(runs: list[dict[str, Any]]) -> str:
    rows = [
        [
            r["scenario"],
            r["load"],
            f"{r.get('entries_before', 0):,}",
            f"{r['requests']:,}",
            f"{r['seeded_deliveries']:,}",
            ", ".join(f"{k}: {v:,}" for k, v in r["entries"].items()) or "-",
        ]
        for r in runs
        if not r["scenario"].startswith("ceiling-")
    ]
    return (
        "Entries created during each measured run, by state, counted in the service's "
        "database after the run settled.\n\n"
        + _table(
            [
                "scenario",
                "load",
                "entries already in the table",
                "requests",
                "seeded deliveries",
                "new entries by state",
            ],
            rows,
        )
    )


def _cpu(runs: list[dict[str, Any]]) -> str:
    names = [
        "service_s",
        "broker_s",
        "hubsim_s",
        "bench_and_wrk_s",
        "foreign_s",
        "machine_softirq_s",
        "machine_steal_s",
        "machine_idle_s",
        "waited_s",
        "wall_s",
    ]
    rows = [
        [f"{r['scenario']} {r['load']}", *(_number(r["cpu"].get(n), 2) for n in names)]
        for r in runs
    ]
    return (
        "CPU seconds over each measured run (2 cores = 2 CPU seconds per second). "
        "'service' is the server process (the ceiling app in ceiling rows); 'foreign' "
        "is machine busy time not used by any process of the benchmark; 'idle' is "
        "the cores' idle time; 'waited' is how long the server, Mosquitto and the hub "
        "simulator were ready to run but waited for a core. Both large in one run means "
        "the work came in bursts: at moments more processes wanted a core than there "
        "were, at others a core had nothing to do.\n\n"
        + _table(
            [
                "run",
                "server",
                "mosquitto",
                "hub sim",
                "bench + wrk",
                "foreign",
                "softirq",
                "steal",
                "idle",
                "waited",
                "wall",
            ],
            rows,
        )
    )


def _grant(report: dict[str, Any]) -> str:
    grant = report.get("grant", {})
    return (
        f"- Size: **{grant.get('bytes', '-')} bytes** ({grant.get('source', '-')}); "
        f"limit {GRANT_LIMIT_BYTES} bytes.\n"
        f"- Same-shape grant signed offline with the service's issuer key: "
        f"{grant.get('offline_bytes', '-')} bytes.\n"
        f"- MQTT unlock command carrying it: {grant.get('command_bytes', '-')} bytes.\n"
    )


def _hubsim(report: dict[str, Any]) -> str:
    sim = report.get("hubsim") or {}
    if not sim:
        return "Not run.\n"
    handled = sim.get("commands", 0)
    per_command = (1000 * sim.get("handler_seconds", 0) / handled) if handled else None
    return (
        f"- Agents built: {sim.get('agents', 0):,}; commands handled: {handled:,}; "
        f"unlocks: {sim.get('unlocks', 0):,}; dropped (unknown hub): "
        f"{sim.get('dropped_unknown_hub', 0):,}; failed: {sim.get('failed', 0):,}\n"
        f"- Mean time in the hub code per command (parse, verify grant, journal, unlock, "
        f"sign and publish event and reply): {_number(per_command, 3)} ms\n"
        f"- Journal fsync cost on this machine's disk (not in the figures above; a real "
        f"hub pays it twice per unlock: the spent token with its visit, before the bolt "
        f"moves, then the event with its reply): "
        f"{_number(report.get('journal_fsync_ms'), 3)} ms per journal write\n"
    )


def _profile(name: str, profile: dict[str, Any]) -> str:
    if "error" in profile:
        return f"## Profile: {name}\n\n{profile['error']}\n"
    threads = ", ".join(f"{t['frame']} {t['pct']}%" for t in profile["threads"])
    inclusive = [[f"`{row['frame']}`", f"{row['pct']}%"] for row in profile["inclusive"]]
    own = [[f"`{row['frame']}`", f"{row['pct']}%"] for row in profile["self"][:15]]
    return (
        f"## Profile: {name}\n\n"
        f"py-spy, {profile['samples']:,} samples of the service's processes (`serve` and "
        f"its writer process) under "
        f"{profile['load']}, on-CPU threads only (raw stacks: `{profile['raw']}`).\n\n"
        f"By thread: {threads}\n\n"
        "Doorstep functions and the main SQLAlchemy session calls, inclusive (share of "
        "on-CPU samples with the function anywhere on the stack):\n\n"
        + _table(["function", "inclusive"], inclusive)
        + "\nHottest functions by self time (any library). `Runner.run` is the event loop's "
        "native code (uvloop, httptools); `do_execute` and `do_commit` include the time spent "
        "inside SQLite, waiting for its write lock included.\n\n"
        + _table(["function", "self"], own)
    )


def _method(report: dict[str, Any]) -> str:
    lines = "\n".join(f"- {line}" for line in report["method"])
    return f"## How this was measured\n\n{lines}\n"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


METHOD = [
    'Ceiling: `bench/ceiling.py`, `POST /ok` answering `{"ok": true}` from an `async def` '
    'endpoint, under `uvicorn.run(app, host, port, log_level="warning", access_log=False)` '
    "in one process, as `doorstep serve` runs. wrk sends it the same request as an entry "
    "(method, headers, body size). `fastapi-sync` is the same endpoint as a `def`, run in "
    "FastAPI's thread pool; it is information, not the ceiling (doorstep's entry route is an "
    "`async` Starlette endpoint that hands its work to the writer thread).",
    "Decision: `POST /v1/courier/entries` (wait=none) on `doorstep serve` started as a "
    "subprocess with default settings (SQLite in WAL mode, synchronous=NORMAL) and "
    "`DOORSTEP_BROKER_URL` set to a Mosquitto 2.0 started by `doorstep.broker.Mosquitto`. "
    "The response is sent after the commit; the grant is published to the hub's command "
    "topic right after the commit. No hub answers during these runs.",
    "Whole path: `POST /v1/courier/entries?wait=unlocked`, which answers after the hub's "
    "reply has been ingested and committed. Hubs are `bench/hubsim.py`: the real "
    "`HubAgent`, `GrantVerifier` (pinned to the service's issuer keys), `Journal` and "
    "`SimulatedLock(motor_seconds=0)`, one agent per hub, built before each run, in one "
    "process with one MQTT connection.",
    "The hub simulator logs in to the broker as its own user with the service's reach "
    "(readwrite on doorstep/hubs/#), not with per-hub credentials: acceptable for a "
    "benchmark, not how hubs connect in production. Its journals are in-memory SQLite "
    "(same code and schema), "
    "so a real hub's storage fsyncs are not in the whole-path figures (see the fsync probe "
    "under 'Hub simulator'). It does not consume acks or resend. Nobody opens its doors, "
    "so its hubs relock an unopened door after an hour, not the hub's 60 s, lest relocks "
    "of earlier runs' entries land on the service during later runs.",
    "Every request uses its own home, access point, hub, delivery and package (an access "
    "point holds one open entry). They are bulk-inserted into the service's database after "
    "the migrations, bypassing the API and the audit chain; the carrier, resident and first "
    "courier accounts are made with the service's own functions (that courier signs in "
    "through `POST /v1/auth/token` as a check), then 16,384 couriers with bearer tokens; "
    "request n is made by courier n % 16384 under the default attempt limits "
    "(10 a minute each).",
    "Each row is a warm-up run, then a measured run; latency percentiles come from wrk's "
    "own histogram (its `done()` callback). After each run the database is checked: every "
    "request must have produced an entry in the expected state, otherwise the row is "
    "marked invalid.",
    "Everything runs on the same machine and cores: wrk (2 threads when concurrent), the "
    "server, Mosquitto and the hub simulator compete for CPU, as do any other processes "
    "('foreign' CPU, reported per run; the bench waits up to --quiet-wait seconds for a "
    "quiet machine before each measured run).",
]
