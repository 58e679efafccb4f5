"""Lock drivers: each maps one kind of device onto the hub's lock model (`hub.lock`).

- `simulated`: a lock with motor time, jams, battery and a door sensor, for tests,
  benchmarks and the demo.

Each driver lives in its own module and is imported from there, so loading one never
pulls in another's dependencies.
"""
