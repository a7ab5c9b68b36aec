"""Consent with source and time, privacy export and erase, and erased addresses staying suppressed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlmodel import select

from engine.audience.build import suppressed_mask
from engine.schedule.planning import plan_run
from engine.spec import load_campaign
from engine.store import Device, Event, Message, Recipient, Store, Suppression
from engine.store.columnar import suppression_sets
from engine.store.consent import set_consent
from engine.store.db import upsert
from engine.store.privacy import erase_recipient, export_recipient
from engine.store.queries import RecipientRow, address_hash, recipient_hash
from engine.store.segments import SegmentProfile, save_build
from engine.store.tables import ConsentRecord, SegmentMember
from tests.conftest import Project, SmtpServer

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)

CAMPAIGN = """
    [campaign]
    name = "news"
    goal = "click"

    [content]
    pool = "news"

    [[variants]]
    name = "a"
    subject = "Hello {{ recipient.id }}"
    template = "digest"

    [optimize]
    bandit = "none"
    exploration = 0.0
"""


def seed(project: Project) -> None:
    project.write("people.csv", """
        id,email,consent_email,consent_email_source,consent_email_at,plan
        ann,ann@example.test,true,signup form,2026-10-01T08:00:00+00:00,pro
        bob,Bob@Example.test,true,,,free
        cy,cy@example.test,false,support ticket 42,2026-11-02T10:00:00Z,pro
    """)
    project.write("content.csv", """
        id,pool,title,url,topic,published_at
        n1,news,First,https://news.example.test/1,sports,2026-11-30T08:00:00+00:00
    """)
    project.write("events.jsonl", "\n".join(json.dumps(e) for e in [
        {"recipient_id": "bob", "type": "click", "item_id": "n1", "ts": "2026-11-30T09:00:00+00:00"},
        {"recipient_id": "ann", "type": "open", "ts": "2026-11-30T10:00:00+00:00"},
    ]) + "\n")
    project.write("campaigns/news.toml", CAMPAIGN)
    for kind, name in (("recipients", "people.csv"), ("content", "content.csv"), ("events", "events.jsonl")):
        project.kairos("import", kind, name, check=True)


def plan_statuses(project: Project) -> dict[str, str]:
    result = project.kairos("plan", "news", "--output", "plan.jsonl", check=True)
    assert "plan rows" in result.stdout
    rows = [json.loads(line) for line in (project.path / "plan.jsonl").read_text().splitlines()]
    return {row["recipient_id"]: row["status"] for row in rows}


def test_imports_record_consent_with_source_and_time_once(project: Project) -> None:
    seed(project)
    project.kairos("import", "recipients", "people.csv", check=True)  # the same file again: nothing new
    exported = json.loads(project.kairos("privacy", "export", "cy", check=True).stdout)
    assert exported["recipient"]["consent_email"] is False
    assert "consent_email_source" not in exported["recipient"]["attributes"]
    email = [c for c in exported["consent"] if c["channel"] == "email"]
    assert [(c["granted"], c["source"], c["at"]) for c in email] == \
        [(False, "support ticket 42", "2026-11-02T10:00:00+00:00")]
    bob = json.loads(project.kairos("privacy", "export", "bob", check=True).stdout)
    assert [c["source"] for c in bob["consent"]] == ["import people.csv", "import people.csv"]
    project.write("people2.csv", "id,email,consent_email,consent_email_source\n"
                                 "bob,bob@example.test,false,unsubscribe page\n")
    project.kairos("import", "recipients", "people2.csv", check=True)
    bob = json.loads(project.kairos("privacy", "export", "bob", check=True).stdout)
    assert [(c["granted"], c["source"]) for c in bob["consent"] if c["channel"] == "email"] == \
        [(True, "import people.csv"), (False, "unsubscribe page")]
    assert plan_statuses(project) == {"ann": "send", "bob": "no_consent", "cy": "no_consent"}


def test_erase_then_reimport_stays_suppressed(project: Project, smtp_server: SmtpServer) -> None:
    seed(project)
    exported = json.loads(project.kairos("privacy", "export", "bob", check=True).stdout)
    assert exported["recipient"]["email"] == "bob@example.test"
    assert [e["type"] for e in exported["events"]] == ["click"]

    erased = project.kairos("privacy", "erase", "bob", check=True)
    assert "erased bob: deleted 1 events" in erased.stdout
    missing = project.kairos("privacy", "export", "bob")
    assert missing.returncode == 2 and "no recipient 'bob'" in missing.stderr
    assert "already erased" in project.kairos("privacy", "erase", "bob", check=True).stdout
    store = project.store()
    with store.session() as session:
        assert session.exec(select(Event).where(Event.recipient_id == "bob")).all() == []
        kept = session.exec(select(Suppression)).all()
        assert {(s.recipient_id, s.address_hash, s.reason) for s in kept} == {
            (None, address_hash("bob@example.test"), "erased"), (None, recipient_hash("bob"), "erased")}
    store.dispose()

    project.write("again.csv", "id,email\nrobert,BOB@example.test\nbob,\n")
    project.kairos("import", "recipients", "again.csv", check=True)
    statuses = plan_statuses(project)
    assert statuses["robert"] == "suppressed" and statuses["ann"] == "send"
    assert statuses["bob"] == "no_consent"  # no address; and its id is suppressed too
    project.kairos("send", "news", check=True)
    delivered = {rcpt for message in smtp_server.messages for rcpt in message.rcpt_tos}
    assert delivered == {"ann@example.test"}


def test_consent_withdrawn_after_planning_is_respected_at_send_time(project: Project,
                                                                     smtp_server: SmtpServer) -> None:
    seed(project)
    store = project.store()
    spec = load_campaign(project.path / "campaigns" / "news.toml", project.path / "templates")
    run = plan_run(store, spec, datetime.now(UTC))
    assert run.counts == {"send": 2, "no_consent": 1}
    with store.session() as session:
        assert set_consent(session, "ann", "email", False, "preference centre")
    result = project.kairos("send", "news", check=True)
    assert "resuming unfinished run" in result.stdout
    assert {r for m in smtp_server.messages for r in m.rcpt_tos} == {"bob@example.test"}
    with store.session() as session:
        ann = session.exec(select(Message).where(Message.recipient_id == "ann")).one()
        assert ann.state == "no_consent"
        records = session.exec(select(ConsentRecord).where(ConsentRecord.recipient_id == "ann")).all()
        assert [(r.granted, r.source) for r in records if r.channel == "email"] == \
            [(True, "signup form"), (False, "preference centre")]
    store.dispose()


def test_erase_removes_everything_and_keeps_only_hashes(store: Store) -> None:
    with store.session() as session:
        upsert(session, Recipient, [{"id": "p1", "email": "p1@example.test", "timezone": "UTC", "locale": None,
                                     "consent_email": True, "consent_push": True, "attributes": {"plan": "pro"},
                                     "created_at": NOW, "updated_at": NOW}], ["id"])
        session.add(Device(recipient_id="p1", platform="fcm", token="tok", created_at=NOW, updated_at=NOW))
        session.add(Event(id="x1", recipient_id="p1", type="click", ts=NOW - timedelta(days=1)))
        session.add(Message(run_id=1, campaign="c", recipient_id="p1", send_at=NOW, state="sent"))
        session.add(Suppression(recipient_id="p1", channel="email", reason="bounce", created_at=NOW))
        save_build(session, built_at=NOW, method="kmeans", k=1, silhouette=None, min_size=1, features=[],
                   segments=[SegmentProfile("all", 1, {})], recipient_ids=["p1"], labels=["all"])
    with store.session() as session:
        assert set_consent(session, "p1", "push", False, "app settings")
    with store.session() as session:
        exported = export_recipient(session, "p1")
        assert exported is not None
        assert exported["segments"] == [{"version": 1, "segment": "all"}]
        assert [d["token"] for d in exported["devices"]] == ["tok"]
        assert [s["reason"] for s in exported["suppressions"]] == ["bounce"]
        erasure = erase_recipient(session, "p1", NOW)
    assert erasure is not None and erasure.deleted == {
        "events": 1, "messages": 1, "devices": 1, "consent records": 1, "suppressions": 1,
        "segment memberships": 1, "recipient": 1}
    with store.session() as session:
        for table in (Recipient, Device, Event, Message, ConsentRecord, SegmentMember):
            assert session.exec(select(table)).all() == [], table
        hashes = {s.address_hash for s in session.exec(select(Suppression)).all()}
        assert hashes == {address_hash("p1@example.test"), recipient_hash("p1")}
        returning = [RecipientRow("p1", None, "UTC", None, True, True, {}),
                     RecipientRow("p2", "P1@example.test", "UTC", None, True, True, {}),
                     RecipientRow("p3", "p3@example.test", "UTC", None, True, True, {})]
        assert suppressed_mask(returning, suppression_sets(session, ["email"])).tolist() == [True, True, False]
        assert erase_recipient(session, "nobody", NOW) is None
