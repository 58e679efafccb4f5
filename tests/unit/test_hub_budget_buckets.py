"""Each hub's message budget (`hublink.link.MessageBudget`), with the time passed in: a
burst at once, then the sustained rate; hubs apart from one another; a warning at most
once a minute per hub; and the buckets of hubs gone quiet forgotten, so that memory
holds only the hubs heard from lately. The budget's limits are settings
(`DOORSTEP_HUBLINK__*`), and one that is no budget stops `serve` before it starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from doorstep.cli.main import cli
from doorstep.hublink.link import BUDGET_WARNING_SECONDS, MessageBudget
from doorstep.settings import Settings


def _taken(budget: MessageBudget, hub_id: str, now: float, tries: int) -> int:
    return sum(budget.take(hub_id, now) for _ in range(tries))


def test_a_burst_at_once_then_the_sustained_rate() -> None:
    budget = MessageBudget(per_second=20.0, burst=600)

    assert _taken(budget, "hub-a", 100.0, 1000) == 600
    assert _taken(budget, "hub-a", 100.5, 1000) == 10  # half a second: ten more
    assert _taken(budget, "hub-a", 100.5, 1) == 0
    assert _taken(budget, "hub-a", 1000.0, 1000) == 600  # refilled, never past the burst


def test_one_hub_over_its_budget_leaves_the_others_theirs() -> None:
    budget = MessageBudget(per_second=20.0, burst=5)

    assert _taken(budget, "hub-a", 10.0, 100) == 5
    assert _taken(budget, "hub-b", 10.0, 5) == 5


def test_a_hub_over_its_budget_is_warned_of_once_a_minute() -> None:
    budget = MessageBudget(per_second=1.0, burst=1)
    budget.take("hub-a", 0.0)

    assert budget.warn_due("hub-a", 0.0)
    assert not budget.warn_due("hub-a", BUDGET_WARNING_SECONDS - 0.1)
    assert budget.warn_due("hub-a", BUDGET_WARNING_SECONDS)


def test_quiet_hubs_are_forgotten_and_a_flooding_one_is_not() -> None:
    budget = MessageBudget(per_second=20.0, burst=600)
    for n in range(10_000):
        budget.take(f"hub-{n}", 0.0)
    assert len(budget) == 10_000

    later = BUDGET_WARNING_SECONDS  # full again long since, and past the warning interval
    assert _taken(budget, "hub-flood", later - 1.0, 1000) == 600
    budget.take("hub-new", later)  # a new hub's bucket: the quiet ones are swept

    assert len(budget) == 2  # the new hub and the flooding one
    assert _taken(budget, "hub-flood", later, 1000) == 20  # a second's worth, not a new burst


def test_the_budget_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOORSTEP_HUBLINK__MESSAGES_PER_SECOND", "50")
    monkeypatch.setenv("DOORSTEP_HUBLINK__MESSAGE_BURST", "2000")

    budget = Settings().hublink

    assert (budget.messages_per_second, budget.message_burst) == (50.0, 2000)
    assert (budget.camera_beats_per_second, budget.camera_beat_burst) == (20.0, 40)  # defaults


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MESSAGES_PER_SECOND", "0"),
        ("MESSAGES_PER_SECOND", "inf"),
        ("MESSAGE_BURST", "0"),
        ("CAMERA_BEATS_PER_SECOND", "-1"),
        ("CAMERA_BEAT_BURST", "0"),
    ],
)
def test_a_budget_that_is_no_budget_stops_serve(tmp_path: Path, name: str, value: str) -> None:
    data_dir = tmp_path / "data"
    variable = f"DOORSTEP_HUBLINK__{name}"

    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(data_dir)], env={variable: value})

    assert result.exit_code == 1
    assert f"hublink.{name.lower()} ({variable}):" in result.output
    assert not (data_dir / "broker").exists(), "something was started"
