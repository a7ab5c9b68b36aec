"""Tracked links, the open pixel and the unsubscribe URL of one message.

Every http(s) link of the HTML and text parts is rewritten to ``<base>/c/<token>``, where the
signed token (:mod:`engine.render.tokens`) names the recipient, the message, the link's
position, the content item it points at and its destination — with the campaign's UTM
parameters added (existing ``utm_*`` parameters of a link are kept). The same destination gets
the same position in both parts. Links already pointing at the tracking server (the
unsubscribe link), ``mailto:`` and in-page anchors are left alone.

The open pixel ``<base>/o/<token>`` goes before ``</body>``. The unsubscribe URL
``<base>/u/<token>`` is both the List-Unsubscribe target (RFC 8058 one-click POST) and the
link in the footer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape, unescape
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from engine.render.tokens import TokenKind, TrackingToken, sign_token

_HTML_LINK = re.compile(r"""(<a\b[^>]*?\shref\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.I)
_TEXT_LINK = re.compile(r"""https?://[^\s<>"'\])]+""")
_TRAILING_PUNCTUATION = ".,;:!?"
_UTM_CACHE_SIZE = 4096


@dataclass(frozen=True)
class LinkTracking:
    """How a campaign's links are tracked.

    :param key: the token key (:func:`engine.render.tokens.token_key` of the tracking secret).
    :param utm: UTM parameters added to every destination, e.g. ``(("utm_source", "kairos"), ...)``.
    """

    base_url: str
    key: bytes = field(repr=False)
    utm: tuple[tuple[str, str], ...] = ()
    clicks: bool = True
    opens: bool = True
    _utm_cache: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def unsubscribe_url(self, message_key: int, recipient_id: str) -> str:
        token = TrackingToken(TokenKind.UNSUBSCRIBE, message_key, recipient_id)
        return f"{self.base_url}/u/{sign_token(self.key, token)}"

    def with_utm(self, url: str) -> str:
        """``url`` with the campaign's UTM parameters (cached: item links repeat across recipients)."""
        cached = self._utm_cache.get(url)
        if cached is not None:
            return cached
        result = url
        if self.utm:
            parts = urlsplit(url)
            query = parse_qsl(parts.query, keep_blank_values=True)
            present = {name for name, _ in query}
            added = [(name, value) for name, value in self.utm if name not in present]
            if added:
                joined = f"{parts.query}&{urlencode(added)}" if parts.query else urlencode(added)
                result = urlunsplit(parts._replace(query=joined))
        if len(self._utm_cache) < _UTM_CACHE_SIZE:
            self._utm_cache[url] = result
        return result

    def track(self, html: str | None, text: str, message_key: int, recipient_id: str,
              item_urls: Mapping[str, str]) -> tuple[str | None, str]:
        """The HTML and text of one message with tracked links and the open pixel.

        :param item_urls: destination URL -> content item id, so clicks are credited to items.
        """
        positions: dict[str, int] = {}
        done: dict[str, str] = {}  # a destination in both parts (or twice in one) is signed once

        def tracked(url: str) -> str:
            found = done.get(url)
            if found is not None:
                return found
            if not url.startswith(("http://", "https://")) or url.startswith(self.base_url):
                return url
            destination = self.with_utm(url)
            if not self.clicks:
                return destination
            link = positions.setdefault(url, len(positions))
            token = TrackingToken(TokenKind.CLICK, message_key, recipient_id, link, item_urls.get(url, ""),
                                  destination)
            done[url] = result = f"{self.base_url}/c/{sign_token(self.key, token)}"
            return result

        def html_link(match: re.Match[str]) -> str:
            raw = match.group(2) if match.group(2) is not None else match.group(3)
            url = unescape(raw) if "&" in raw else raw
            return f'{match.group(1)}"{escape(tracked(url), quote=True)}"'

        def text_link(match: re.Match[str]) -> str:
            url = match.group()
            stripped = url.rstrip(_TRAILING_PUNCTUATION)
            return tracked(stripped) + url[len(stripped):]

        if html is not None:
            html = _HTML_LINK.sub(html_link, html)
            if self.opens:
                html = _with_pixel(html, self._pixel(message_key, recipient_id))
        return html, _TEXT_LINK.sub(text_link, text)

    def _pixel(self, message_key: int, recipient_id: str) -> str:
        token = sign_token(self.key, TrackingToken(TokenKind.OPEN, message_key, recipient_id))
        return (f'<img src="{self.base_url}/o/{token}" width="1" height="1" alt="" '
                'style="display:block;width:1px;height:1px;border:0;">')


def _with_pixel(html: str, pixel: str) -> str:
    end = html.rfind("</body>")
    if end < 0:
        end = html.rfind("</BODY>")
    return html + pixel if end < 0 else html[:end] + pixel + html[end:]
