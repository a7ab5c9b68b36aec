"""Quiet hours and the daily cap across campaigns, in each recipient's local time, at send time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from engine.schedule.send_rules import SendRules, apply_send_rules, quiet_until
from engine.store import Message, MessageState, Store, outbox
from engine.store.queries import RecipientRow

NOW = datetime(2026, 11, 23, 21, 30, tzinfo=UTC)  # 22:30 in Madrid, 16:30 in New York, 06:30 in Tokyo (24th)
QUIET = SendRules(quiet_hours=(22 * 60, 7 * 60))


def recipient(rid: str, zone: str) -> RecipientRow:
    return RecipientRow(rid, f"{rid}@example.test", zone, None, True, True, {})


def test_quiet_hours_wrap_midnight_in_the_recipient_s_zone() -> None:
    madrid = quiet_until(QUIET, ZoneInfo("Europe/Madrid"), NOW)
    assert madrid == datetime(2026, 11, 24, 7, 0, tzinfo=ZoneInfo("Europe/Madrid"))
    assert quiet_until(QUIET, ZoneInfo("America/New_York"), NOW) is None
    tokyo = quiet_until(QUIET, ZoneInfo("Asia/Tokyo"), NOW)
    assert tokyo == datetime(2026, 11, 24, 7, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    # daytime quiet hours that do not wrap
    lunch = SendRules(quiet_hours=(12 * 60, 14 * 60))
    assert quiet_until(lunch, ZoneInfo("UTC"), NOW.replace(hour=13)) == NOW.replace(hour=14, minute=0)
    assert quiet_until(lunch, ZoneInfo("UTC"), NOW.replace(hour=14, minute=0)) is None


def test_a_dst_change_overnight_ends_quiet_hours_at_the_local_time() -> None:
    # Europe/Madrid moves its clocks back on 2026-10-25 at 03:00
    night = datetime(2026, 10, 24, 22, 30, tzinfo=UTC)
    until = quiet_until(QUIET, ZoneInfo("Europe/Madrid"), night)
    assert until is not None and until.astimezone(ZoneInfo("Europe/Madrid")).hour == 7
    assert until == datetime(2026, 10, 25, 6, 0, tzinfo=UTC)


def test_daily_cap_counts_every_campaign_in_the_local_day(store: Store) -> None:
    people = {r.id: r for r in (recipient("mad", "Europe/Madrid"), recipient("ny", "America/New_York"),
                                recipient("tok", "Asia/Tokyo"))}
    with store.session() as session:
        run = outbox.start_run(session, "other", "h", "manual", NOW)
        assert run.id is not None
        # one message each already sent today by another campaign (Tokyo's was on its yesterday)
        session.add_all([
            Message(run_id=run.id, campaign="other", recipient_id="mad", state=MessageState.SENT, send_at=NOW,
                    sent_at=NOW - timedelta(hours=3)),
            Message(run_id=run.id, campaign="other", recipient_id="ny", state=MessageState.SENT, send_at=NOW,
                    sent_at=NOW - timedelta(hours=3)),
            Message(run_id=run.id, campaign="other", recipient_id="tok", state=MessageState.SENT, send_at=NOW,
                    sent_at=NOW - timedelta(hours=7)),
        ])
    due = [Message(id=100 + n, run_id=2, campaign="digest", recipient_id=rid, state=MessageState.CLAIMED,
                   send_at=NOW) for n, rid in enumerate(["mad", "ny", "tok", "ny"])]
    with store.session() as session:
        verdict = apply_send_rules(session, SendRules(daily_cap=1), due, people, NOW)
    # Madrid (19:30 local) and New York (13:30 local) already had one today; Tokyo's was at 23:30
    # yesterday in Tokyo, before its local midnight
    assert [m.recipient_id for m in verdict.allowed] == ["tok"]
    assert verdict.capped == 3 and {c["state"] for c in verdict.changes} == {MessageState.CAPPED}

    with store.session() as session:
        both = apply_send_rules(session, SendRules(quiet_hours=(22 * 60, 7 * 60), daily_cap=2), due, people, NOW)
    assert [m.recipient_id for m in both.allowed] == ["ny"]  # Madrid and Tokyo are asleep; New York's 3rd is capped
    assert both.deferred == 2 and both.capped == 1
