"""`python -m bench`: run every measurement in order and write the report.

1. The ceiling: minimal Starlette and FastAPI apps under uvicorn (as `doorstep serve`).
2. The entry decision: `POST /v1/courier/entries` on the real service.
3. Profile of the decision path (py-spy, when installed).
4. The whole software path: `POST /v1/courier/entries?wait=unlocked`, answered once the
   simulated hubs have verified the grant, unlocked (motor time 0) and replied.
5. Profile of the whole path.
Also: video, courier and resident latencies, revocation to the hub, and the visit
decision at scale (`bench/video.py`, `courier.py`, `revocation.py`, `scale.py`).
Each scenario runs sequentially (1 connection) and with 16 concurrent connections.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import hotspots, loadgen, machine, measure, report
from bench.ceiling import APPS
from bench.loadgen import Load
from bench.measure import DECISION, WHOLE_PATH, Options, Outcome, Scenario, wait_quiet
from bench.procstat import Meter
from bench.rig import Rig, RigError
from bench.seed import ACCESS_POINT_SLUG, entry_body_format, hub_id

PHASES = ("ceiling", "decision", "whole-path", "video", "courier", "revocation", "scale")
DEFAULT_BOUND_RPS = 5000.0


class Progress:
    def __init__(self) -> None:
        self._started = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self._started:6.1f}s] {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = Options(
        duration=args.duration,
        warmup=args.warmup,
        loads=(Load("sequential", 1, 1), Load("concurrent", args.threads, args.concurrency)),
        quiet_cores=args.quiet_cores,
        quiet_wait=args.quiet_wait,
    )
    say = Progress()
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    bench_report: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "environment": machine.environment(),
        "options": {
            "duration": options.duration,
            "warmup": options.warmup,
            "concurrency": args.concurrency,
            "concurrent_threads": args.threads,
            "phases": args.only or list(PHASES),
        },
        "runs": [],
        "profiles": {},
        "method": report.METHOD,
    }
    say(
        f"doorstep bench: {bench_report['environment']['cpu_count']} CPUs, affinity "
        f"{bench_report['environment']['affinity']}, Python {platform.python_version()}"
    )
    foreign = wait_quiet(Meter(dict), options, say)
    bench_report["probes"] = probes = machine.speed_probes() | {"foreign_cores": foreign}
    say(
        f"machine: process wake-up round trip {probes['wake_round_trip_us']:g} us "
        f"({probes['wake_cpu_us']:g} us CPU), Ed25519 sign {probes['ed25519_sign_us']:g} us, "
        f"verify {probes['ed25519_verify_us']:g} us"
    )
    workdir = Path(tempfile.mkdtemp(prefix="doorstep-bench-"))
    failed = False
    try:
        _run(args, options, bench_report, workdir, stamp, say)
    except (RigError, loadgen.LoadError, RuntimeError) as exc:
        failed = True
        say(f"FAILED: {exc}")
        bench_report["error"] = str(exc)
    finally:
        if args.keep or failed:
            say(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report.with_ratios(bench_report)
    bench_report["targets"] = report.evaluate(bench_report)
    path = report.write(bench_report, stamp, args.reports_dir)
    for target in bench_report["targets"]:
        say(
            f"{target['result']:<11} {target['target']}: {target['measured']} "
            f"(target {target['limit']})"
        )
    say(f"report: {path} (and latest.md / latest.json beside it)")
    invalid = any(not run["valid"] for run in bench_report["runs"])
    return 1 if failed or invalid else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=int, default=6, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds per run")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="connections in the concurrent runs"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads when concurrent")
    parser.add_argument(
        "--only", action="append", choices=PHASES, help="run only this phase (repeatable)"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profiles")
    parser.add_argument(
        "--profile-seconds", type=int, default=5, help="length of each py-spy profile"
    )
    parser.add_argument(
        "--quiet-cores",
        type=float,
        default=0.25,
        help="wait before a run while other processes use more cores",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=15.0,
        help="longest wait for a quiet machine before each run (seconds)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--reports-dir", type=Path, default=report.REPORTS_DIR)
    return parser


def _run(
    args: argparse.Namespace,
    options: Options,
    bench_report: dict[str, Any],
    workdir: Path,
    stamp: str,
    say: Progress,
) -> None:
    phases = set(args.only or PHASES)
    runs: list[Outcome] = []
    profile = not args.no_profile and hotspots.py_spy() is not None
    if not args.no_profile and not profile:
        say("py-spy not found: profiles skipped (.venv/bin/pip install py-spy)")
    if "video" in phases:
        from bench import video  # OpenCV and ffmpeg only when this phase runs

        say("video: a 720p 15 fps camera, one recorder (stream copy), then 10 clips")
        bench_report["video"] = video.run()
        recording, ready = bench_report["video"]["recording"], bench_report["video"]["clip_ready"]
        say(
            f"             recorder {recording['recorder_cpu_percent']} % of a core; "
            f"clip playable p95 {ready['p95_s']} s after the window"
        )
    if "courier" in phases:
        from bench import courier

        say("courier: tap to bolt (1 s motor), door closed to verified lock, camera loss")
        bench_report["courier"] = courier.run()
        figures = bench_report["courier"]["targets"]
        say(
            f"             tap to bolt p50 {figures['tap_to_bolt_p50_s']} s, p99 "
            f"{figures['tap_to_bolt_p99_s']} s; camera loss to alert p99 "
            f"{figures['camera_loss_to_alert_p99_s']} s"
        )
    if "revocation" in phases:
        from bench import revocation

        say("revocation: keypad codes given and revoked on real processes")
        bench_report["revocation"] = revocation.run()
        figures = bench_report["revocation"]["revoke_to_enforced_at_hub_s"]
        say(f"             revoke to enforced at the hub p50 {figures['p50']} s, p99 "
            f"{figures['p99']} s")  # fmt: skip
    if "scale" in phases:
        from bench import scale

        say("scale: visit decisions on 10k and 1M homes (generating takes a few minutes)")
        bench_report["scale"] = scale.run(say=say)
    if "ceiling" in phases:
        for app in APPS:
            runs += measure.ceiling(app, options, workdir / "logs", say)
            bench_report["runs"] = [run.to_json() for run in runs]
    if not phases & {"decision", "whole-path"}:
        return
    rig = Rig(workdir)
    say("starting Mosquitto and `doorstep serve` (default settings, SQLite)")
    rig.start()
    say(f"service at {rig.url} (pid {rig.pids()['service']}), broker on port {rig.broker.port}")
    try:
        if "decision" in phases:
            _sanity(rig, DECISION)
            for load in options.loads:
                bound = _rate(runs, "ceiling-fastapi", load) or DEFAULT_BOUND_RPS
                runs.append(measure.entries(rig, DECISION, load, options, bound_rps=bound, say=say))
                bench_report["runs"] = [run.to_json() for run in runs]
            if profile:
                bench_report["profiles"]["decision"] = _profile(
                    rig,
                    DECISION,
                    options.loads[-1],
                    args.profile_seconds,
                    runs,
                    stamp,
                    args.reports_dir,
                    say,
                )
        if "whole-path" in phases:
            say("starting the hub simulator")
            rig.start_hubs()
            _sanity(rig, WHOLE_PATH)
            for load in options.loads:
                bound = 1.2 * (_rate(runs, "decision", load) or DEFAULT_BOUND_RPS / 1.2)
                runs.append(
                    measure.entries(rig, WHOLE_PATH, load, options, bound_rps=bound, say=say)
                )
                bench_report["runs"] = [run.to_json() for run in runs]
            if profile:
                bench_report["profiles"]["whole-path"] = _profile(
                    rig,
                    WHOLE_PATH,
                    options.loads[-1],
                    args.profile_seconds,
                    runs,
                    stamp,
                    args.reports_dir,
                    say,
                )
    finally:
        say("stopping")
        sim_stats = orjson.loads(rig.stop() or "{}")
        bench_report["hubsim"] = sim_stats
        bench_report["grant"] = _grant(rig, sim_stats)
        bench_report["journal_fsync_ms"] = machine.journal_fsync_ms(workdir)


def _rate(runs: list[Outcome], scenario: str, load: Load) -> float | None:
    for run in runs:
        if run.scenario == scenario and run.load == load and run.valid:
            return run.result.rps
    return None


def _sanity(rig: Rig, scenario: Scenario) -> None:
    """One request by hand first, so a broken set-up fails with a clear message."""
    import httpx

    block = rig.allocate(1, hubs=scenario.hubs)
    response = httpx.post(
        f"{rig.url}{measure.ENTRIES_PATH}{scenario.query}",
        timeout=30,
        headers={
            "authorization": f"Bearer {rig.token_of(block.start)}",
            "content-type": "application/json",
        },
        content=entry_body_format() % (block.start, block.start),
    )
    state = response.json().get("state") if response.status_code == 201 else None
    if state != scenario.expected_state:
        raise RigError(
            f"{scenario.name}: expected an entry in state {scenario.expected_state}, got "
            f"{response.status_code} {response.text}\n--- serve.log ---\n"
            f"{rig.log_tail('serve.log')}\n--- hubsim.log ---\n{rig.log_tail('hubsim.log')}"
        )
    rig.settle(timeout=2)


def _profile(
    rig: Rig,
    scenario: Scenario,
    load: Load,
    seconds: int,
    runs: list[Outcome],
    stamp: str,
    reports_dir: Path,
    say: Progress,
) -> dict[str, Any]:
    rate = _rate(runs, scenario.name, load) or DEFAULT_BOUND_RPS
    say(f"profiling {scenario.name} ({load.name}) with py-spy for {seconds}s")
    block = rig.allocate(int(rate * 1.5 * (seconds + 2)) + 200, hubs=scenario.hubs)
    reports_dir.mkdir(parents=True, exist_ok=True)
    raw = reports_dir / f"{stamp}-profile-{scenario.name}.txt"
    pid = rig.pids()["service"]
    assert pid is not None
    spy = hotspots.start(pid, seconds, raw)
    measure.drive(rig, scenario, load, block, seconds + 1)
    _, errors = spy.communicate(timeout=seconds + 30)
    rig.settle()
    if spy.returncode != 0 or not raw.exists():
        return {"error": f"py-spy failed: {errors.decode(errors='replace')[-500:]}"}
    summary = hotspots.summarize(raw)
    return {
        **summary,
        "load": f"{load.name} load ({load.connections} connections)",
        "raw": _relative(raw),
    }


def _relative(path: Path) -> str:
    root = Path(__file__).resolve().parent.parent
    resolved = path.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)


def _grant(rig: Rig, sim_stats: dict[str, Any]) -> dict[str, Any]:
    from doorstep.access import keys as issuer_keys
    from doorstep.protocol.grants import GrantClaims, audience_for, new_token_id

    now = int(time.time())
    keys = issuer_keys.load_or_create(rig.data_dir / "keys")
    offline = keys.signer.sign(
        GrantClaims(
            audience=audience_for(hub_id(1), ACCESS_POINT_SLUG),
            not_before=now,
            expires=now + 300,
            issued_at=now,
            token_id=new_token_id(),
            scope=("unlock",),
            entry_id="ent-" + "0" * 16,
        )
    )
    wire = sim_stats.get("grant_bytes") or {}
    commands = sim_stats.get("command_bytes") or {}
    return {
        "bytes": wire.get("max", len(offline)),
        "source": (
            f"largest of {wire['count']:,} grants seen on the wire by the hub "
            f"simulator (smallest {wire['min']})"
        )
        if wire
        else "signed offline (the hub simulator saw none)",
        "offline_bytes": len(offline),
        "command_bytes": commands.get("max"),
    }
