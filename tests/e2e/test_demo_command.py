"""The README's first command: `doorstep demo` (what `scripts/demo` runs after setting up)
starts the service with its own Mosquitto and simulated homes as real processes, delivers
a parcel into each home, and exits 0 saying where its database and logs are."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HOMES = 2  # the command's default


def test_the_demo_delivers_into_every_home_and_says_where_it_kept_everything(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "doorstep", "demo", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output
    relocked = re.findall(r"verified relock: bolt locked, door closed; entry \S+ done", output)
    assert len(relocked) == HOMES, output
    assert "doorstep audit verify: audit chain intact" in output
    assert "demo finished: every parcel delivered" in output
    database = re.search(r"^database: (.+)$", output, re.MULTILINE)
    logs = re.search(r"^logs: +(.+)$", output, re.MULTILINE)
    assert database and Path(database.group(1)).is_file(), output
    assert logs and Path(logs.group(1)).is_dir() and any(Path(logs.group(1)).iterdir())
    # The claim codes are shown masked: the terminal is not a place for a live secret.
    assert re.search(r"claim code [A-Z0-9]{4}-\*{4}", output), output
