"""CPU time from /proc, for our processes and for the whole machine.

The machine is shared (2 cores): other work running during a measurement slows it down.
`Meter` reads the CPU time of the processes we started (with their children) plus the
machine's totals before and after a run, so the report can say how much CPU the service
used per request and how much went to processes that are not part of the benchmark
("foreign").

It also reads how long our processes were ready to run but waited for a core (the
scheduler's run-queue delay, `/proc/<pid>/task/<tid>/schedstat`) and how long the cores
sat idle. Both large in one run means the work came in bursts: at some moments more
processes wanted a core than there were cores, at others a core had nothing to do.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a live process (all its threads); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    # After "pid (comm)": state is field 0, utime 11, stime 12 (man 5 proc, fields 14-15).
    return (int(fields[11]) + int(fields[12])) / TICKS


def process_wait_seconds(pid: int) -> float:
    """Seconds the threads of a live process were ready to run but waited for a core
    (the second field of each thread's schedstat); 0 if it is gone or the kernel does
    not keep scheduler statistics."""
    total = 0
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/schedstat", "rb") as stat:
                total += int(stat.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue  # the thread has ended
    return total / 1e9


def tree_seconds(pid: int) -> tuple[float, float]:
    """`process_cpu_seconds` and `process_wait_seconds` of a process and of its live
    descendants, summed: the service with its writer process (`doorstep.hotwriter`) is
    one server."""
    members = _tree(pid)
    return (
        sum(process_cpu_seconds(member) for member in members),
        sum(process_wait_seconds(member) for member in members),
    )


def _tree(pid: int) -> list[int]:
    """A process and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    members, todo = [], [pid]
    while todo:
        current = todo.pop()
        members.append(current)
        todo.extend(children.get(current, ()))
    return members


def own_cpu_seconds() -> float:
    """This process and every child it has waited for (wrk runs end that way)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


@dataclass(frozen=True)
class MachineTimes:
    busy: float  # user + nice + system, seconds summed over all cores
    softirq: float
    steal: float
    idle: float  # idle + iowait
    total: float

    @classmethod
    def read(cls) -> MachineTimes:
        with open("/proc/stat") as stat:
            values = [int(v) / TICKS for v in stat.readline().split()[1:]]
        user, nice, system, idle, iowait, irq, softirq, steal = (values + [0.0] * 8)[:8]
        total = user + nice + system + idle + iowait + irq + softirq + steal
        return cls(user + nice + system, irq + softirq, steal, idle + iowait, total)


@dataclass(frozen=True)
class Snapshot:
    at: float
    processes: dict[str, float]
    waits: dict[str, float]
    own: float
    machine: MachineTimes


class Meter:
    """CPU used by named processes (pids looked up when read) and by everything else."""

    def __init__(self, pids: Callable[[], Mapping[str, int | None]]) -> None:
        self._pids = pids

    def snapshot(self) -> Snapshot:
        pids = {name: pid for name, pid in self._pids().items() if pid}
        seconds = {name: tree_seconds(pid) for name, pid in pids.items()}
        processes = {name: cpu for name, (cpu, _) in seconds.items()}
        waits = {name: waited for name, (_, waited) in seconds.items()}
        return Snapshot(time.monotonic(), processes, waits, own_cpu_seconds(), MachineTimes.read())

    @staticmethod
    def usage(before: Snapshot, after: Snapshot) -> dict[str, float]:
        """CPU seconds per process over the interval, plus the machine's view of it."""
        wall = after.at - before.at
        used = {
            name: after.processes[name] - before.processes.get(name, 0.0)
            for name in after.processes
        }
        used["bench_and_wrk"] = after.own - before.own
        ours = sum(used.values())
        busy = after.machine.busy - before.machine.busy
        waited = {
            name: after.waits[name] - before.waits.get(name, 0.0)
            for name in after.waits
            if name in before.waits  # a process started mid-run has no start to count from
        }
        return {
            **{f"{name}_s": round(value, 3) for name, value in used.items()},
            **{f"{name}_waited_s": round(value, 3) for name, value in waited.items()},
            "waited_s": round(sum(waited.values()), 3),
            "machine_idle_s": round(after.machine.idle - before.machine.idle, 3),
            "wall_s": round(wall, 3),
            "machine_busy_s": round(busy, 3),
            "machine_softirq_s": round(after.machine.softirq - before.machine.softirq, 3),
            "machine_steal_s": round(after.machine.steal - before.machine.steal, 3),
            "foreign_s": round(max(0.0, busy - ours), 3),
            "foreign_cores": round(max(0.0, busy - ours) / wall, 3) if wall > 0 else 0.0,
        }


def foreign_load(meter: Meter, seconds: float = 0.5) -> float:
    """Cores used by processes outside the benchmark, sampled over `seconds`."""
    before = meter.snapshot()
    time.sleep(seconds)
    return Meter.usage(before, meter.snapshot())["foreign_cores"]
