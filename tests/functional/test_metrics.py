"""The operator's Prometheus scrape (`GET /metrics`) over real HTTP, with a delivery made
through the real broker and hub: absent unless its token is set, closed to anyone without
that token, and then the service's own counts, with no id, name or address in them."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from doorstep import demo
from doorstep.settings import Settings

TOKEN = secrets.token_urlsafe(32)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_do_not_exist_unless_a_token_is_set(live: Any) -> None:
    assert live.settings.metrics_token is None
    with httpx.Client(base_url=live.url, timeout=30) as http:
        assert http.get("/metrics").status_code == 404
        assert http.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 404


def test_the_scrape_counts_a_delivery_and_a_denial(
    live: Any, world: demo.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live.settings, "metrics_token", SecretStr(TOKEN))
    home, courier = world.homes[0], world.couriers[0][1]
    delivery = demo.book(world, home, ["PKG-M-1"])
    denied = demo.request_entry(courier, delivery["id"], "NOT-A-PARCEL", home.latitude,
                                home.longitude)  # fmt: skip
    entry = demo.request_entry(courier, delivery["id"], "PKG-M-1", home.latitude, home.longitude)
    home.door("open_door")
    home.door("close_door")
    demo.wait_entry(courier, entry["id"], "done")

    with httpx.Client(base_url=live.url, timeout=30) as http:
        anonymous = http.get("/metrics")
        wrong = http.get("/metrics", headers={"authorization": f"Bearer {TOKEN[:-1]}x"})
        scrape = http.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})

    assert (anonymous.status_code, wrong.status_code) == (401, 401)
    assert TOKEN not in anonymous.text + wrong.text
    assert scrape.status_code == 200, scrape.text
    assert scrape.headers["content-type"].startswith("text/plain")
    assert scrape.headers["cache-control"] == "no-store"
    samples = _samples(scrape.text)
    decisions = "doorstep_entry_decisions_total"
    assert denied["state"] == "denied"
    assert (
        samples[
            (
                decisions,
                (("purpose", "delivery"), ("reason", denied["reason"]), ("state", "denied")),
            )
        ]
        == 1
    )
    assert (
        samples[(decisions, (("purpose", "delivery"), ("reason", ""), ("state", "authorized")))]
        == 1
    )
    assert samples[("doorstep_hubs", (("state", "online"),))] == 1
    assert samples[("doorstep_hubs", (("state", "offline"),))] == 0
    assert all(
        value == 0 for (name, _labels), value in samples.items() if name == "doorstep_open_entries"
    )
    assert samples[("doorstep_hub_messages_total", (("kind", "events"),))] >= 5
    assert samples[("doorstep_hub_messages_total", (("kind", "reply"),))] >= 1
    assert samples[("doorstep_writer_batch_jobs_count", ())] >= 1
    assert (
        samples[("doorstep_writer_batch_seconds_count", ())]
        == samples[("doorstep_writer_batch_jobs_count", ())]
    )
    assert samples[("doorstep_audit_records", ())] >= 7  # the entry's own records alone
    assert ("doorstep_outbox_pending", ()) in samples
    assert samples[("doorstep_outbox_oldest_pending_seconds", ())] >= 0
    # Counts only: no home, hub, entry, delivery or person is named.
    for private in (home.id, home.hub_id, entry["id"], delivery["id"], "@"):
        assert private not in scrape.text


def test_a_short_metrics_token_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        Settings(metrics_token="guessable")
