"""One campaign's email, end to end: render, track links, build the MIME bytes, sign with DKIM.

:class:`EmailComposer` holds what is fixed for a campaign (compiled templates, the From header,
link tracking, the DKIM key, the return-path mailbox) so that per message only the recipient's
part is done. Every marketing message carries RFC 8058 one-click unsubscribe headers and a
VERP return path (:mod:`engine.render.verp`) that names the message, for bounce matching.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.config import Settings
from engine.errors import ConfigError
from engine.render.mime import BuiltEmail, address_header, build_email, fold, sender_domain
from engine.render.templates import CompiledVariant, RenderedEmail, TemplateSet
from engine.render.tokens import token_key
from engine.render.tracking import LinkTracking
from engine.render.verp import verp_address
from engine.spec.model import CampaignSpec

if TYPE_CHECKING:
    from engine.render.dkim import DkimSigner


@dataclass(frozen=True)
class ComposedEmail:
    """A message ready for SMTP: envelope sender (VERP), recipient and the signed bytes."""

    sender: str
    recipient: str
    data: bytes
    rendered: RenderedEmail
    headers: tuple[tuple[str, str], ...]
    html: str | None
    text: str


def require_secret(settings: Settings) -> bytes:
    """The tracking secret, or a ConfigError naming the variable that should hold it."""
    if settings.tracking.secret is None:
        name = settings.tracking.secret_env
        raise ConfigError(f"${name}", "tracking.secret_env",
                          f"the environment variable {name} is not set; it holds the key that signs tracked "
                          f"links, unsubscribe URLs and bounce addresses (e.g. export {name}=$(openssl rand -hex 32))")
    return settings.tracking.secret


class EmailComposer:
    """Composes the messages of one campaign.

    :param secret: the tracking secret (links, unsubscribe tokens and VERP addresses).
    :param return_path: the bounce mailbox VERP addresses are made from (``bounces@example.com``).
    :param unsubscribe_mailto: a mailbox also offered in List-Unsubscribe, or None.
    """

    def __init__(self, spec: CampaignSpec, templates: TemplateSet, *, from_address: str, base_url: str,
                 secret: bytes, return_path: str, unsubscribe_mailto: str | None = None,
                 signer: DkimSigner | None = None) -> None:
        self.spec = spec
        self.templates = templates
        self.from_address = from_address
        self.from_header = address_header(from_address)
        self.domain = sender_domain(from_address)
        self.secret = secret
        self.return_path = return_path
        self.unsubscribe_mailto = unsubscribe_mailto
        self.signer = signer
        self.tracking = LinkTracking(base_url, token_key(secret), utm=spec.utm, clicks=spec.track_clicks,
                                     opens=spec.track_opens)
        self.list_id = f"{spec.name} <{spec.name}.{self.domain}>"
        self._compiled: dict[str, CompiledVariant] = {}

    @classmethod
    def from_settings(cls, settings: Settings, spec: CampaignSpec, templates: TemplateSet,
                      secret: bytes | None = None) -> EmailComposer:
        """A composer configured by ``settings``; ``secret`` overrides the tracking secret (preview, demo)."""
        email = settings.email
        signer = None
        if email.dkim is not None:  # OpenSSL's bindings load only for a sender that signs
            from engine.render.dkim import load_signer

            signer = load_signer(email.dkim)
        return cls(spec, templates, from_address=email.from_address, base_url=settings.tracking.base_url,
                   secret=secret if secret is not None else require_secret(settings),
                   return_path=email.return_path or f"bounces@{sender_domain(email.from_address)}",
                   unsubscribe_mailto=email.unsubscribe_mailto, signer=signer)

    def compose(self, *, message_key: int, recipient_id: str, to: str, variant: str, context: Mapping[str, Any],
                item_urls: Mapping[str, str], header_message_id: str, date: datetime) -> ComposedEmail:
        """Render ``variant`` with ``context`` and build the signed message for one recipient.

        :raises RenderError: when a template fails for this recipient.
        """
        compiled = self._compiled.get(variant)
        if compiled is None:
            compiled = self._compiled[variant] = self.templates.compile(self.spec, self.spec.variant(variant))
        unsubscribe_url = self.tracking.unsubscribe_url(message_key, recipient_id)
        context = {**context, "message": {"unsubscribe_url": unsubscribe_url}}
        rendered = compiled.render(context)
        html, text = self.tracking.track(rendered.html, rendered.text, message_key, recipient_id, item_urls)
        built = build_email(from_header=self.from_header, to=to, subject=rendered.subject, text=text, html=html,
                            header_message_id=header_message_id, date=date,
                            extra_headers=self._list_headers(unsubscribe_url, variant))
        return ComposedEmail(sender=verp_address(message_key, self.secret, self.return_path), recipient=to,
                             data=self.sign(built, date), rendered=rendered, headers=built.headers, html=html,
                             text=text)

    def sign(self, built: BuiltEmail, date: datetime) -> bytes:
        """The message bytes, with a DKIM-Signature on top when a key is configured."""
        if self.signer is None:
            return built.as_bytes()
        signature = self.signer.sign(built.headers, built.body, int(date.timestamp()))
        return built.as_bytes(first=((self.signer.header_name, signature),))

    def _list_headers(self, unsubscribe_url: str, variant: str) -> list[tuple[str, str]]:
        targets = f"<{unsubscribe_url}>"
        if self.unsubscribe_mailto:
            targets += f", <mailto:{self.unsubscribe_mailto}?subject=unsubscribe:{unsubscribe_url.rpartition('/')[2]}>"
        return [
            ("List-Unsubscribe", fold("List-Unsubscribe", targets)),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("List-Id", self.list_id),
            ("Feedback-ID", f"{variant}:{self.spec.name}:kairos:{self.domain}"),
        ]
