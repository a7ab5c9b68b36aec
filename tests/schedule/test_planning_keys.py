"""Firings are planned once, and recipient-time crons start in each recipient's own morning."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import select

from engine.schedule.planning import plan_run
from engine.schedule.triggers import run_key, schedule_trigger, wall_clock
from engine.spec import load_campaign
from engine.store import Message, Run, Store
from tests.conftest import Project

CAMPAIGN = """
[campaign]
name = "morning"
goal = "click"

[schedule]
cron = "0 9 * * MON"
timezone = "recipient"
send_time = "fixed"

[content]
pool = "news"

[[variants]]
name = "a"
subject = "Hi"
template = "digest"
"""


def test_recipient_time_cron_is_planned_once_at_nine_in_each_zone(project: Project) -> None:
    project.write("recipients.csv", "id,email,timezone\nmad,m@example.test,Europe/Madrid\n"
                  "ny,n@example.test,America/New_York\ntok,t@example.test,Asia/Tokyo\n")
    project.write("content.csv", "id,pool,title,url\nn1,news,One,https://n.test/1\n")
    project.kairos("import", "recipients", "recipients.csv", check=True)
    project.kairos("import", "content", "content.csv", check=True)
    spec = load_campaign(project.write("campaigns/morning.toml", CAMPAIGN), Path(project.path / "templates"))
    trigger = schedule_trigger(spec.schedule)
    assert trigger is not None
    fire = trigger.get_next_fire_time(None, datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    store: Store = project.store()

    first = plan_run(store, spec, fire, "cron", key=run_key(spec.schedule, fire),
                     wall_clock=wall_clock(spec.schedule, fire))
    again = plan_run(store, spec, fire, "cron", key=run_key(spec.schedule, fire),
                     wall_clock=wall_clock(spec.schedule, fire))
    assert first.created and not again.created and again.run_id == first.run_id
    with store.session() as session:
        assert len(session.exec(select(Run)).all()) == 1
        send_at = {m.recipient_id: m.send_at for m in session.exec(select(Message)).all()}
    for recipient, zone in (("mad", "Europe/Madrid"), ("ny", "America/New_York"), ("tok", "Asia/Tokyo")):
        local = send_at[recipient].astimezone(ZoneInfo(zone))
        assert (local.weekday(), local.hour, local.minute) == (0, 9, 0), (recipient, local)
