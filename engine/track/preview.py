"""Previews: every campaign x variant x sample recipient, composed exactly as the pump would send it.

Used by ``kairos preview`` to write ``.eml`` and ``.html`` files, and by the preview page
(:mod:`engine.track.preview_app`), which renders afresh on every request so that an edited
template or campaign file shows at once. Errors (a bad campaign file, a template error with its
file and line) are collected, not raised, so the page can show them next to what still renders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from engine.config import Settings
from engine.errors import KairosError, SpecError
from engine.render.compose import EmailComposer
from engine.render.samples import SampleMessage, compose_samples, load_samples
from engine.render.templates import TemplateSet
from engine.spec import campaign_files, find_campaign, load_campaign
from engine.spec.model import CampaignSpec
from engine.store import Store


@dataclass(frozen=True)
class Preview:
    """One message as it would be sent; ``email`` is None when rendering failed (see ``error``)."""

    campaign: str
    message: SampleMessage

    @property
    def key(self) -> tuple[str, str, str]:
        return self.campaign, self.message.variant, self.message.recipient_id


@dataclass(frozen=True)
class PreviewSet:
    previews: tuple[Preview, ...]
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    sources: tuple[str, ...]

    def find(self, campaign: str, variant: str, recipient: str) -> Preview | None:
        return next((p for p in self.previews if p.key == (campaign, variant, recipient)), None)


def _campaigns(settings: Settings, campaign: str | None, errors: list[str]) -> list[CampaignSpec]:
    if campaign is not None:
        return [find_campaign(campaign, settings.paths.campaigns, settings.paths.templates)]
    specs = []
    for path in campaign_files(settings.paths.campaigns):
        try:
            specs.append(load_campaign(path, settings.paths.templates))
        except KairosError as exc:
            errors.append(str(exc))
    return specs


def render_previews(settings: Settings, store: Store | None, now: datetime, *, secret: bytes,
                    campaign: str | None = None, recipient: str | None = None,
                    variant: str | None = None) -> PreviewSet:
    """Compose previews of one campaign (or all in ``[paths] campaigns``) for sample recipients.

    :param secret: signs the links of the previews (the configured secret, or a throwaway one).
    :raises SpecError: when the named campaign, variant or recipient does not exist.
    """
    errors: list[str] = []
    warnings: dict[str, None] = {}
    sources: list[str] = []
    previews: list[Preview] = []
    templates = TemplateSet(settings.paths.templates)
    for spec in _campaigns(settings, campaign, errors):
        if variant is not None and variant not in [v.name for v in spec.variants]:
            raise SpecError(spec.source, "--variant", f"no variant {variant!r}; the variants of {spec.name} are "
                            + ", ".join(v.name for v in spec.variants))
        try:
            composer = EmailComposer.from_settings(settings, spec, templates, secret=secret)
            samples = load_samples(store, spec, now, recipient_id=recipient)
        except SpecError:
            raise
        except KairosError as exc:
            errors.append(str(exc))
            continue
        check = compose_samples(composer, samples, now, variants=[variant] if variant else None)
        previews += [Preview(spec.name, message) for message in check.messages]
        errors += [str(e) for e in check.errors]
        warnings.update(dict.fromkeys(f"{spec.name}: {w}" for w in check.warnings))
        sources.append(f"{spec.name}: {samples.source}")
    return PreviewSet(tuple(previews), tuple(dict.fromkeys(errors)), tuple(warnings), tuple(sources))


def write_previews(previews: Sequence[Preview], directory: Path) -> list[Path]:
    """Write ``<campaign>/<variant>--<recipient>.eml`` and ``.html`` under ``directory``."""
    written: list[Path] = []
    for preview in previews:
        email = preview.message.email
        if email is None:
            continue
        folder = directory / preview.campaign
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{preview.message.variant}--{_safe(preview.message.recipient_id)}"
        (folder / f"{stem}.eml").write_bytes(email.data)
        written.append(folder / f"{stem}.eml")
        if email.html is not None:
            (folder / f"{stem}.html").write_text(email.html, encoding="utf-8")
            written.append(folder / f"{stem}.html")
    return written


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
