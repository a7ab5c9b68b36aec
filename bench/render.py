"""Messages rendered + built + DKIM-signed per second on one core: Kairos against the naive path.

Both paths make the same message from the same campaign, templates and recipients — the
shipped ``weekly-digest`` campaign, its ``curiosity`` variant, three items per message, every
link tracked — and sign it with the same RSA-2048 key:

- kairos: :class:`engine.render.compose.EmailComposer` (CSS inlined once per template, direct
  MIME assembly, DKIM through OpenSSL);
- naive: Jinja (stock sandbox) + css-inline on each message + the same link tracking +
  ``email.message.EmailMessage`` + stock ``dkim.sign`` (pure-Python RSA).

Prints one JSON object. Run from the repository root::

    python -m bench.render --messages 3000 --naive-messages 300
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import dkim
import jinja2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jinja2.sandbox import SandboxedEnvironment

from engine.render.compose import EmailComposer
from engine.render.dkim import SIGNED_HEADERS, DkimSigner
from engine.render.inline import inline_rendered
from engine.render.mime import message_id
from engine.render.samples import SampleItem, email_context
from engine.render.templates import TemplateSet
from engine.spec import load_campaign
from engine.spec.model import CampaignSpec

ROOT = Path(__file__).resolve().parents[1]
SECRET = b"bench-secret"
NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
FIRST_NAMES = ("Ada", "Grace", "Alan", "Zoë", "Linus", "Barbara", "Edsger", "Frances")


Work = list[tuple[int, str, dict[str, Any], dict[str, str]]]


def contexts(spec: CampaignSpec, count: int) -> Work:
    """(message key, address, template context, item urls) for ``count`` distinct recipients."""
    from engine.store.queries import RecipientRow

    items = [SampleItem(f"a{n}", f"Story number {n} about {topic}", f"https://news.example.com/{topic}/{n}", topic,
                        NOW, {"reading_minutes": 3 + n % 5})
             for n, topic in enumerate(("science", "travel", "food", "business", "culture", "sports") * 4)]
    out = []
    for key in range(1, count + 1):
        recipient = RecipientRow(f"r{key:07d}", f"reader{key}@example.org", "Europe/Madrid", "es", True, True,
                                 {"first_name": FIRST_NAMES[key % len(FIRST_NAMES)], "plan": "pro"})
        chosen = [items[(key + offset * 7) % len(items)] for offset in range(spec.content.items)]
        out.append((key, recipient.email or "", email_context(spec, "curiosity", recipient, chosen),
                    {item.url: item.id for item in chosen}))
    return out


def composer_for(spec: CampaignSpec, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> EmailComposer:
    return EmailComposer(spec, TemplateSet(ROOT / "templates"), from_address="Kairos News <news@example.com>",
                         base_url="https://t.example.com", secret=SECRET, return_path="bounces@example.com",
                         signer=DkimSigner("example.com", "k1", key))


def kairos_path(spec: CampaignSpec, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> Callable[..., bytes]:
    composer = composer_for(spec, key)

    def make(number: int, to: str, context: dict[str, Any], item_urls: dict[str, str]) -> bytes:
        return composer.compose(message_key=number, recipient_id=context["recipient"]["id"], to=to,
                                variant="curiosity", context=context, item_urls=item_urls,
                                header_message_id=message_id(1, number, spec.name, "example.com"), date=NOW).data
    return make


def naive_path(spec: CampaignSpec, key: rsa.RSAPrivateKey, inline_css: bool = True) -> Callable[..., bytes]:
    environment = SandboxedEnvironment(loader=jinja2.FileSystemLoader(str(ROOT / "templates")), autoescape=True,
                                       undefined=jinja2.StrictUndefined)
    text_environment = SandboxedEnvironment(loader=jinja2.FileSystemLoader(str(ROOT / "templates")),
                                            undefined=jinja2.StrictUndefined)
    html_template, text_template = environment.get_template("digest.html"), text_environment.get_template("digest.txt")
    subject_template = text_environment.from_string(spec.variant("curiosity").subject)
    # The same tracking as the kairos path, so both make the same message.
    tracking = composer_for(spec, key).tracking
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    signed = [name.encode() for name in SIGNED_HEADERS]

    def make(number: int, to: str, context: dict[str, Any], item_urls: dict[str, str]) -> bytes:
        unsubscribe = tracking.unsubscribe_url(number, context["recipient"]["id"])
        subject = subject_template.render(context)
        context = {**context, "message": {"unsubscribe_url": unsubscribe, "subject": subject, "preheader": ""}}
        html = html_template.render(context)
        if inline_css:
            html = inline_rendered(html)
        html, text = tracking.track(html, text_template.render(context), number, context["recipient"]["id"],
                                    item_urls)
        message = EmailMessage(policy=SMTP)
        message["From"] = "Kairos News <news@example.com>"
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = NOW.strftime("%a, %d %b %Y %H:%M:%S +0000")
        message["Message-ID"] = message_id(1, number, spec.name, "example.com")
        message["List-Unsubscribe"] = f"<{unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        data = message.as_bytes()
        return bytes(dkim.sign(data, b"k1", b"example.com", pem, include_headers=signed,
                               canonicalize=(b"relaxed", b"relaxed"))) + data
    return make


def measure(make: Callable[..., bytes], work: Work) -> dict[str, float]:
    make(*work[0])  # compile and warm caches outside the timing, as a long-running sender would
    started = time.perf_counter()
    size = sum(len(make(*item)) for item in work)
    seconds = time.perf_counter() - started
    return {"messages": len(work), "seconds": round(seconds, 3), "per_second": round(len(work) / seconds, 1),
            "ms_per_message": round(seconds / len(work) * 1000, 3), "mean_bytes": round(size / len(work))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages for each Kairos measurement")
    parser.add_argument("--naive-messages", type=int, default=300, help="messages for each naive measurement")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    spec = load_campaign(ROOT / "campaigns" / "weekly-digest.toml", ROOT / "templates")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    work = contexts(spec, max(args.messages, args.naive_messages))
    kairos = measure(kairos_path(spec, rsa_key), work[:args.messages])
    naive = measure(naive_path(spec, rsa_key), work[:args.naive_messages])
    naive_no_css = measure(naive_path(spec, rsa_key, inline_css=False), work[:args.naive_messages])
    kairos_ed25519 = measure(kairos_path(spec, ed25519.Ed25519PrivateKey.generate()), work[:args.messages])
    print(json.dumps({
        "benchmark": "render + build + DKIM-sign, one core",
        "campaign": spec.name, "variant": "curiosity", "items_per_message": spec.content.items,
        "kairos_rsa2048": kairos,
        "naive_rsa2048": naive,
        "ratio": round(kairos["per_second"] / naive["per_second"], 2),
        "naive_rsa2048_without_css_inlining": naive_no_css,
        "ratio_against_naive_without_css_inlining": round(kairos["per_second"] / naive_no_css["per_second"], 2),
        "kairos_ed25519": kairos_ed25519,
        "target_ratio": 8,
    }, indent=2))


if __name__ == "__main__":
    main()
