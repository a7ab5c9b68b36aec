"""Turn a campaign file (TOML or YAML) into a :class:`CampaignSpec`, or a :class:`SpecError`.

Every error names the file, the line, the dotted field and what was expected. Sections and keys
not listed in :data:`SECTIONS` are refused, so a typo never silently does nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import SpecError
from engine.sourcemap import Document, load_document
from engine.spec import values
from engine.spec.audience_keys import read_predicted, read_tiers
from engine.spec.model import (
    Audience,
    CampaignSpec,
    Content,
    Diversity,
    FrequencyCap,
    GuardrailLimits,
    Optimize,
    Schedule,
    SendLimits,
    Staged,
    Tiers,
    Trigger,
    Variant,
)
from engine.spec.rules import (
    AUDIENCE_FUNCTIONS,
    CONTENT_FIELDS,
    CONTENT_FUNCTIONS,
    RECIPIENT_FIELDS,
    Rule,
    RuleSyntaxError,
    parse_rule,
    pointer,
)

CAMPAIGN_SUFFIXES = (".toml", ".yaml", ".yml")
SUPPORTED_CHANNELS = ("email", "push")
SUPPORTED_BANDITS = ("thompson", "ucb", "epsilon", "none")
ITEM_EXPLORATION = ("epsilon", "softmax")
TEMPLATE_SUFFIXES = (".html", ".txt")

SECTIONS: dict[str, tuple[str, ...]] = {
    "campaign": ("name", "goal", "goal_window", "description", "utm", "track"),
    "schedule": ("cron", "at", "trigger", "timezone", "window", "send_time", "quiet_hours"),
    "audience": ("where", "holdout", "frequency_cap", "predicted", "tiers"),
    "content": ("pool", "where", "items", "diversity"),
    "channels": ("allowed",),
    "variants": ("name", "subject", "template", "preheader", "push_title", "push_body", "push_url"),
    "optimize": ("bandit", "exploration", "item_exploration", "temperature", "staged", "guardrail", "split_by",
                 "confidence", "exploration_decay"),
    "limits": ("rate", "domain_rate"),
}
REQUIRED_SECTIONS = ("campaign", "content", "variants")

@dataclass
class _Reader:
    """Typed access to one document's fields, raising located SpecErrors."""

    document: Document

    def fail(self, dotted: str, problem: str) -> SpecError:
        return SpecError(self.document.path, dotted, problem, line=self.document.line_of(dotted))

    def table(self, dotted: str, value: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(dotted, f"expected a table of {', '.join(allowed)}, got {values.shown(value)}")
        for key in value:
            if key not in allowed:
                raise self.fail(f"{dotted}.{key}", f"unknown key; [{dotted.split('[', maxsplit=1)[0]}] takes "
                                + ", ".join(allowed))
        return value

    def require(self, dotted: str, table: dict[str, Any], keys: tuple[str, ...], missing: str) -> None:
        """Fail at the first of ``keys`` that ``table`` (at ``dotted``) lacks, with ``missing`` as the problem."""
        for key in keys:
            if key not in table:
                raise self.fail(f"{dotted}.{key}", missing)

    def typed(self, dotted: str, value: Any, parse: Callable[[Any], Any]) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise self.fail(dotted, f"expected {exc}, got {values.shown(value)}") from None

    def rule(self, dotted: str, value: Any, fields: tuple[str, ...], functions: dict[str, Any]) -> Rule:
        text = self.typed(dotted, value, values.non_empty_string)
        try:
            return parse_rule(text, fields, functions)
        except RuleSyntaxError as exc:
            shown = pointer(text, exc.column).replace("\n", "\n    ")
            raise SpecError(self.document.path, dotted, f"{exc.problem}\n    {shown}",
                            line=self.document.line_of(dotted), column=exc.column) from None


def load_campaign(path: Path, templates: Path) -> CampaignSpec:
    """Read and validate one campaign file.

    :param templates: the templates directory; every variant's template must exist there.
    :raises SpecError: naming the file, line and field.
    """
    document = load_document(path, SpecError)
    read = _Reader(document)
    data = document.data
    for section in data:
        if section not in SECTIONS:
            raise read.fail(section, "unknown section; expected " + ", ".join(f"[{s}]" for s in SECTIONS))
    for section in REQUIRED_SECTIONS:
        if section not in data:
            raise SpecError(path, section, f"missing the [{section}] section", line=None)

    campaign = read.table("campaign", data["campaign"], SECTIONS["campaign"])
    read.require("campaign", campaign, ("name", "goal"), "missing; it is required")
    name = read.typed("campaign.name", campaign["name"], values.name)
    goal = read.typed("campaign.goal", campaign["goal"], values.goal)
    goal_window = read.typed("campaign.goal_window", campaign.get("goal_window", "48h"), values.positive_duration)
    description = read.typed("campaign.description", campaign["description"], values.non_empty_string) \
        if "description" in campaign else ""
    track = read.table("campaign.track", campaign.get("track", {}), ("clicks", "opens"))

    channels = _channels(read, data.get("channels", {"allowed": ["email"]}))
    variants = _variants(read, data["variants"], templates)
    if "push" in channels:
        for index, variant in enumerate(variants):
            if not variant.push_body:
                raise read.fail(f"variants[{index}].push_body", "missing; a campaign that allows push needs "
                                "push_body (and may set push_title, push_url) on every variant")
    return CampaignSpec(
        name=name,
        goal=goal,
        goal_window=goal_window,
        schedule=_schedule(read, data.get("schedule", {})),
        audience=_audience(read, data.get("audience", {})),
        content=_content(read, data["content"]),
        channels=channels,
        variants=variants,
        optimize=_optimize(read, data.get("optimize", {})),
        limits=_limits(read, data.get("limits", {})),
        source=path,
        spec_hash=hashlib.sha256(path.read_bytes()).hexdigest(),
        description=description,
        utm=_utm(read, campaign.get("utm", True), name),
        track_clicks=read.typed("campaign.track.clicks", track.get("clicks", True), values.boolean),
        track_opens=read.typed("campaign.track.opens", track.get("opens", True), values.boolean),
        lines=dict(document.lines),
    )


UTM_KEYS = ("source", "medium", "campaign", "term", "content")


def _utm(read: _Reader, value: Any, name: str) -> tuple[tuple[str, str], ...]:
    """UTM parameters for every tracked link: defaults, overridden by ``utm = { ... }``, none with ``false``."""
    if value is False:
        return ()
    if value is True:
        value = {}
    table = read.table("campaign.utm", value, UTM_KEYS)
    merged = {"source": "kairos", "medium": "email", "campaign": name}
    for key, text in table.items():
        merged[key] = read.typed(f"campaign.utm.{key}", text, values.non_empty_string)
    return tuple((f"utm_{key}", merged[key]) for key in UTM_KEYS if key in merged)


def _schedule(read: _Reader, value: Any) -> Schedule:
    table = read.table("schedule", value, SECTIONS["schedule"])
    given = [key for key in ("cron", "at", "trigger") if key in table]
    if len(given) > 1:
        raise read.fail(f"schedule.{given[1]}", f"give one of cron, at or trigger, not both {given[0]} and {given[1]}")
    trigger = None
    if "trigger" in table:
        spec = read.table("schedule.trigger", table["trigger"], ("event", "delay"))
        if "event" not in spec:
            raise read.fail("schedule.trigger.event", "missing; the event that triggers a send, e.g. 'signup'")
        trigger = Trigger(
            event=read.typed("schedule.trigger.event", spec["event"], values.goal),
            delay=read.typed("schedule.trigger.delay", spec.get("delay", "0s"), values.parse_duration),
        )
    return Schedule(
        cron=read.typed("schedule.cron", table["cron"], values.cron) if "cron" in table else None,
        at=read.typed("schedule.at", table["at"], values.instant) if "at" in table else None,
        trigger=trigger,
        timezone=read.typed("schedule.timezone", table.get("timezone", "recipient"), values.zone),
        window=read.typed("schedule.window", table.get("window", ["00:00", "24:00"]), values.window),
        send_time=read.typed("schedule.send_time", table.get("send_time", "fixed"), values.choice("fixed", "optimize")),
        quiet_hours=read.typed("schedule.quiet_hours", table["quiet_hours"], values.quiet_hours)
        if "quiet_hours" in table else None,
    )


def _audience(read: _Reader, value: Any) -> Audience:
    table = read.table("audience", value, SECTIONS["audience"])
    cap = None
    if "frequency_cap" in table:
        spec = read.table("audience.frequency_cap", table["frequency_cap"], ("max", "per"))
        read.require("audience.frequency_cap", spec, ("max", "per"), "missing; e.g. { max = 3, per = \"7d\" }")
        cap = FrequencyCap(
            max=read.typed("audience.frequency_cap.max", spec["max"], values.count),
            per=read.typed("audience.frequency_cap.per", spec["per"], values.positive_duration),
        )
    return Audience(
        where=read.rule("audience.where", table["where"], RECIPIENT_FIELDS, AUDIENCE_FUNCTIONS)
        if "where" in table else None,
        holdout=read.typed("audience.holdout", table.get("holdout", 0.0), values.fraction(0.0, 0.5)),
        frequency_cap=cap,
        predicted=read_predicted(read, table["predicted"]) if "predicted" in table else None,
        tiers=read_tiers(read, table["tiers"]) if "tiers" in table else Tiers(),
    )


def _content(read: _Reader, value: Any) -> Content:
    table = read.table("content", value, SECTIONS["content"])
    if "pool" not in table:
        raise read.fail("content.pool", "missing; the name of the content pool to pick items from")
    diversity = None
    if "diversity" in table:
        spec = read.table("content.diversity", table["diversity"], ("by", "max_per_topic"))
        diversity = Diversity(
            by=read.typed("content.diversity.by", spec.get("by", "topic"), values.choice("topic")),
            max_per_value=read.typed("content.diversity.max_per_topic", spec.get("max_per_topic", 1), values.count),
        )
    return Content(
        pool=read.typed("content.pool", table["pool"], values.name),
        where=read.rule("content.where", table["where"], CONTENT_FIELDS, CONTENT_FUNCTIONS)
        if "where" in table else None,
        items=read.typed("content.items", table.get("items", 1), values.count),
        diversity=diversity,
    )


def _channels(read: _Reader, value: Any) -> tuple[str, ...]:
    table = read.table("channels", value, SECTIONS["channels"])
    allowed = table.get("allowed", ["email"])
    if not isinstance(allowed, list) or not allowed:
        raise read.fail("channels.allowed", f"expected a non-empty list of {', '.join(SUPPORTED_CHANNELS)}")
    for index, channel in enumerate(allowed):
        read.typed(f"channels.allowed[{index}]", channel, values.choice(*SUPPORTED_CHANNELS))
    if len(set(allowed)) != len(allowed):
        raise read.fail("channels.allowed", "lists a channel twice")
    return tuple(allowed)


def _variants(read: _Reader, value: Any, templates: Path) -> tuple[Variant, ...]:
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise read.fail("variants", "expected one or more [[variants]] tables")
    variants = []
    for index, entry in enumerate(value):
        dotted = f"variants[{index}]"
        table = read.table(dotted, entry, SECTIONS["variants"])
        read.require(dotted, table, ("name", "subject", "template"),
                     "missing; every variant needs name, subject and template")
        template = read.typed(f"{dotted}.template", table["template"], values.name)
        if not any((templates / f"{template}{suffix}").is_file() for suffix in TEMPLATE_SUFFIXES):
            raise read.fail(f"{dotted}.template", f"no template {template!r}: expected "
                            + " or ".join(str(templates / f"{template}{s}") for s in TEMPLATE_SUFFIXES))
        variants.append(Variant(
            name=read.typed(f"{dotted}.name", table["name"], values.name),
            subject=read.typed(f"{dotted}.subject", table["subject"], values.template_text),
            template=template,
            preheader=read.typed(f"{dotted}.preheader", table["preheader"], values.template_text)
            if "preheader" in table else "",
            **{key: read.typed(f"{dotted}.{key}", table[key], values.template_text)
               for key in ("push_title", "push_body", "push_url") if key in table},
        ))
    names = [v.name for v in variants]
    for index, variant_name in enumerate(names):
        if names.index(variant_name) != index:
            raise read.fail(f"variants[{index}].name", f"variant name {variant_name!r} is used twice")
    return tuple(variants)


def _limits(read: _Reader, value: Any) -> SendLimits:
    table = read.table("limits", value, SECTIONS["limits"])
    return SendLimits(
        rate=read.typed("limits.rate", table["rate"], values.rate) if "rate" in table else None,
        domain_rate=read.typed("limits.domain_rate", table["domain_rate"], values.rate)
        if "domain_rate" in table else None,
    )


def _optimize(read: _Reader, value: Any) -> Optimize:
    table = read.table("optimize", value, SECTIONS["optimize"])
    staged = None
    if "staged" in table:
        spec = read.table("optimize.staged", table["staged"], ("explore", "wait"))
        read.require("optimize.staged", spec, ("explore", "wait"), "missing; e.g. { explore = 0.2, wait = \"4h\" }")
        staged = Staged(
            explore=read.typed("optimize.staged.explore", spec["explore"], values.fraction(0.01, 1.0)),
            wait=read.typed("optimize.staged.wait", spec["wait"], values.positive_duration),
        )
    guardrail = None
    if "guardrail" in table:
        spec = read.table("optimize.guardrail", table["guardrail"], ("unsubscribe_rate", "complaint_rate",
                                                                    "min_sends"))
        guardrail = GuardrailLimits(
            unsubscribe_rate=read.typed("optimize.guardrail.unsubscribe_rate", spec.get("unsubscribe_rate", 1.0),
                                        values.fraction(0.0, 1.0)),
            complaint_rate=read.typed("optimize.guardrail.complaint_rate", spec.get("complaint_rate", 1.0),
                                      values.fraction(0.0, 1.0)),
            min_sends=read.typed("optimize.guardrail.min_sends", spec.get("min_sends", 200), values.count),
        )
    return Optimize(
        bandit=read.typed("optimize.bandit", table.get("bandit", "thompson"), values.choice(*SUPPORTED_BANDITS)),
        exploration=read.typed("optimize.exploration", table.get("exploration", 0.1), values.fraction(0.0, 1.0)),
        item_exploration=read.typed("optimize.item_exploration", table.get("item_exploration", "epsilon"),
                                    values.choice(*ITEM_EXPLORATION)),
        temperature=read.typed("optimize.temperature", table.get("temperature", 0.5), values.fraction(0.01, 100.0)),
        staged=staged,
        guardrail=guardrail,
        split_by=_split_by(read, table),
        confidence=read.typed("optimize.confidence", table["confidence"], values.fraction(0.5, 0.999))
        if "confidence" in table else None,
        exploration_decay=read.typed("optimize.exploration_decay", table["exploration_decay"], values.count)
        if "exploration_decay" in table else None,
    )


def _split_by(read: _Reader, table: dict[str, Any]) -> str | None:
    """A bandit per persona or tier needs a bandit and something to choose between."""
    if "split_by" not in table:
        return None
    split: str = read.typed("optimize.split_by", table["split_by"], values.choice("segment", "tier"))
    if table.get("bandit", "thompson") == "none":
        raise read.fail("optimize.split_by", "needs a bandit to split; bandit is 'none'")
    return split


def campaign_files(directory: Path) -> Iterator[Path]:
    """The campaign files in ``directory``, sorted."""
    if directory.is_dir():
        yield from sorted(p for p in directory.iterdir() if p.suffix in CAMPAIGN_SUFFIXES and p.is_file())


def find_campaign(reference: str, campaigns: Path, templates: Path) -> CampaignSpec:
    """Load a campaign by file path, or by name from the campaigns directory.

    :raises SpecError: when no file matches or the file is invalid.
    """
    path = Path(reference)
    if path.suffix in CAMPAIGN_SUFFIXES or path.exists():
        return load_campaign(path, templates)
    for candidate in campaign_files(campaigns):
        if candidate.stem == reference:
            return load_campaign(candidate, templates)
    for candidate in campaign_files(campaigns):
        try:
            spec = load_campaign(candidate, templates)
        except SpecError:
            continue
        if spec.name == reference:
            return spec
    raise SpecError(None, None, f"no campaign {reference!r}: not a file, and not the name of a campaign "
                    f"in {campaigns}")
