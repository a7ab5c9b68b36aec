"""`kairos send` of a push-and-email campaign through the FCM, APNs and Web Push stand-ins."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from py_vapid import Vapid02
from sqlmodel import select

from engine.store import ContentItem, Device, Message
from tests.conftest import Project, SmtpServer
from tests.dispatch.certs import LoopbackCA, make_test_ca
from tests.dispatch.push_standins import ApnsStandIn, FcmStandIn, WebPushStandIn

APNS_OK = "ok" + "ab" * 31
APNS_GONE = "gone" + "cd" * 30


@pytest.fixture
def standins(tmp_path: Path) -> Iterator[tuple[LoopbackCA, FcmStandIn, ApnsStandIn, WebPushStandIn]]:
    ca = make_test_ca(tmp_path / "ca")
    with FcmStandIn(ca) as fcm, ApnsStandIn(ca) as apns, WebPushStandIn(ca) as webpush:
        assert isinstance(fcm, FcmStandIn) and isinstance(apns, ApnsStandIn) and isinstance(webpush, WebPushStandIn)
        yield ca, fcm, apns, webpush


def test_a_push_campaign_reaches_every_platform_and_deactivates_gone_devices(
        project: Project, smtp_server: SmtpServer, standins: tuple) -> None:
    ca, fcm, apns, webpush = standins
    project.write("fcm.json", json.dumps(fcm.service_account()))
    project.write("apns.p8", apns.signing_key_pem())
    vapid = Vapid02()
    vapid.generate_keys()
    (project.path / "vapid.pem").write_bytes(vapid.private_pem())
    with project.config.open("a") as config:
        config.write(f"""
[push.fcm]
project_id = "{fcm.project_id}"
credentials_file = "fcm.json"
endpoint = "{fcm.origin}"
ca_file = "{ca.ca_file}"

[push.apns]
team_id = "{apns.team_id}"
key_id = "{apns.key_id}"
key_file = "apns.p8"
topic = "{apns.topic}"
endpoint = "{apns.origin}"
ca_file = "{ca.ca_file}"

[push.webpush]
vapid_private_key_file = "vapid.pem"
subject = "mailto:ops@kairos.test"
ca_file = "{ca.ca_file}"
""")
    project.write("recipients.csv", "id,email,consent_push,first_name\n" + "".join(
        f"{r},{r}@example.test,{'false' if r == 'p6' else 'true'},Name{r[1:]}\n"
        for r in ("p1", "p2", "p3", "p4", "p5", "p6", "e1")))
    subscription, dead = webpush.subscribe("ok"), webpush.subscribe("gone")
    p3_subscription = webpush.subscribe("ok")
    devices = [("p1", "fcm", "ok-p1"), ("p2", "apns", APNS_OK), ("p3", "webpush", p3_subscription),
               ("p4", "fcm", "gone-p4"), ("p4", "webpush", subscription), ("p5", "apns", APNS_GONE),
               ("p5", "webpush", dead), ("p6", "fcm", "ok-p6")]
    project.write("devices.jsonl", "".join(json.dumps({"recipient_id": r, "platform": p, "token": t}) + "\n"
                                           for r, p, t in devices))
    project.write("content.csv", "id,pool,title,url,topic,published_at\n"
                  "n1,news,Rust 2.0 ships,https://news.example.test/1,tech,2026-11-20T08:00:00+00:00\n"
                  "n2,news,Rain all week,https://news.example.test/2,weather,2026-11-20T08:00:00+00:00\n")
    project.write("campaigns/alerts.toml", """
        [campaign]
        name = "alerts"
        goal = "click"

        [content]
        pool = "news"
        items = 2

        [channels]
        allowed = ["push", "email"]

        [[variants]]
        name = "a"
        subject = "News for you"
        template = "digest"
        push_title = "{{ items[0].title }}"
        push_body = "Hi {{ recipient.attributes.first_name }}, and {{ items[1].title | lower }} too"

        [optimize]
        bandit = "none"
    """)
    for kind, name in (("recipients", "recipients.csv"), ("devices", "devices.jsonl"),
                       ("content", "content.csv")):
        project.kairos("import", kind, name, check=True)

    result = project.kairos("send", "alerts", "--seed", "1", check=True)
    assert "run 1 planned for 7" in result.stdout

    with project.store().session() as session:
        messages = {m.recipient_id: m for m in session.exec(select(Message)).all()}
        inactive = {(d.recipient_id, d.platform) for d in session.exec(select(Device)).all() if not d.active}
        titles = dict(session.exec(select(ContentItem.id, ContentItem.title)).all())
    assert {r: (m.state, m.channel) for r, m in messages.items()} == {
        "p1": ("sent", "push"), "p2": ("sent", "push"), "p3": ("sent", "push"), "p4": ("sent", "push"),
        "p5": ("failed", "push"), "p6": ("sent", "email"), "e1": ("sent", "email")}
    assert "410" in str(messages["p5"].last_error)
    assert inactive == {("p4", "fcm"), ("p5", "apns"), ("p5", "webpush")}
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == ["e1@example.test", "p6@example.test"]

    def rendered(recipient: str) -> tuple[str, str]:
        decision = messages[recipient].decision
        assert decision is not None
        first, second = (titles[i["id"]] for i in decision["items"])
        return first, f"Hi Name{recipient[1:]}, and {second.lower()} too"

    assert [(m["token"], m["notification"]["title"], m["notification"]["body"]) for m in fcm.delivered] == [
        ("ok-p1", *rendered("p1"))]
    assert [(t, p["aps"]["alert"]["title"], p["aps"]["alert"]["body"]) for t, _h, p in apns.delivered] == [
        (APNS_OK, *rendered("p2"))]
    assert len(webpush.decrypted) == 2
    by_endpoint = {json.loads(subscription)["endpoint"].rsplit("/", 1)[1]: "p4",
                   json.loads(p3_subscription)["endpoint"].rsplit("/", 1)[1]: "p3"}
    for name, payload, _headers in webpush.decrypted:
        recipient = by_endpoint[name]
        title, body = rendered(recipient)
        decision = messages[recipient].decision or {}
        assert payload == {"title": title, "body": body,
                           "url": f"https://news.example.test/{decision['items'][0]['id'][1:]}",
                           "data": {"campaign": "alerts", "variant": "a", "message": str(messages[recipient].id)}}
