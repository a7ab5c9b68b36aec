"""``kairos segments build|show``: persona segments from behaviour, and experiments split by them."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import typer

from engine.audience.experiments import SPLITS, group_labels, split_posteriors
from engine.cli import app, out
from engine.cli.common import ConfigOption, SeedOption, load_settings, now, open_store
from engine.errors import DataError
from engine.spec import find_campaign
from engine.store.segments import build_segments, latest_build
from engine.store.tables import Segment

segments = typer.Typer(help="Persona segments built from behaviour. Example: kairos segments build",
                       no_args_is_help=True)
app.add_typer(segments, name="segments")


@segments.command("build")
def build(
    min_size: Annotated[int | None, typer.Option("--min-size", min=1, help="merge segments smaller than this "
                                                 "(default: [segments] min_size, 50)")] = None,
    if_due: Annotated[bool, typer.Option("--if-due", help="rebuild only when the latest build is older than "
                                         "[segments] rebuild_every")] = False,
    seed: SeedOption = None,
    config: ConfigOption = None,
) -> None:
    """Cluster recipients on their behaviour into named persona segments, as a new version.

    k is chosen by silhouette over [segments] k_min..k_max; segments under the minimum size are
    merged into their nearest neighbour. Example: kairos segments build --min-size 100
    """
    from engine.audience.personas import build_personas, rebuild_if_due, store_personas  # scikit-learn: slow

    settings = load_settings(config)
    options = settings.segments
    size = min_size or options.min_size
    k_range = range(options.k_min, options.k_max + 1)
    rng = np.random.default_rng(seed if seed is not None else 0)
    store = open_store(settings)
    moment = now()
    with store.session() as session:
        if if_due:
            version = rebuild_if_due(session, moment, options.rebuild_every, rng, min_size=size, k_range=k_range)
            if version is None:
                latest = latest_build(session)
                assert latest is not None
                out.print(f"segments are current: version {latest.version} built "
                          f"{latest.built_at.isoformat(timespec='minutes')} (rebuilt every {options.rebuild_every})")
                return
        else:
            personas = build_personas(session, moment, rng, min_size=size, k_range=k_range)
            if not len(personas.assignment):
                raise DataError(None, "recipients", "no recipients to segment; import some with "
                                "`kairos import recipients FILE`")
            version = store_personas(session, personas, moment)
        built = latest_build(session, version)
        found = build_segments(session, version)
    assert built is not None
    silhouette = f", silhouette {built.silhouette:.2f}" if built.silhouette is not None else ""
    out.print(f"segments version {version}: {built.recipients} recipients in {len(found)} segment(s) "
              f"(k-means, k={built.k}{silhouette}; merged below {built.min_size})")
    for segment in found:
        out.print(f"  {segment.name:<28} {segment.size:>8}")


@segments.command("show")
def show(
    version: Annotated[int | None, typer.Option("--version", help="a build (default: the latest)")] = None,
    campaign: Annotated[str | None, typer.Option("--campaign", help="also split this campaign's variant outcomes "
                                                 "and posteriors by group")] = None,
    by: Annotated[str, typer.Option("--by", help="split by 'segment' or propensity 'tier'")] = "segment",
    seed: SeedOption = None,
    config: ConfigOption = None,
) -> None:
    """Describe the segments: size, share and what sets each apart; with --campaign, each
    variant's outcomes and posterior per segment or tier.

    Example: kairos segments show --campaign weekly-digest --by tier
    """
    if by not in SPLITS:
        raise DataError(None, "--by", f"expected one of {', '.join(SPLITS)}, got {by!r}")
    settings = load_settings(config)
    store = open_store(settings)
    with store.session() as session:
        built = latest_build(session, version)
        if built is None and (campaign is None or by == "segment"):
            raise DataError(None, "--version" if version is not None else "segments",
                            f"no segments version {version}" if version is not None
                            else "no segments are built yet; run `kairos segments build`")
        if built is not None and built.version is not None:
            _describe(built.version, built.recipients, build_segments(session, built.version))
        if campaign is not None:
            spec = find_campaign(campaign, settings.paths.campaigns, settings.paths.templates)
            labels = group_labels(session, spec, by, now())
            arms = split_posteriors(session, spec, labels, np.random.default_rng(seed if seed is not None else 0))
            out.print(f"\n{spec.name}: goal {spec.goal}, by {by}")
            if not arms:
                out.print("  no messages of this campaign yet")
            for arm in arms:
                out.print(f"  {arm.group:<28} {arm.variant:<16} {arm.sends:>7} sent {arm.goals:>6} goals  "
                          f"rate {arm.mean:.3f} [{arm.low:.3f}, {arm.high:.3f}]  P(best) {arm.p_best:.2f}",
                          markup=False)


def _describe(version: int, recipients: int, found: list[Segment]) -> None:
    out.print(f"segments version {version}: {recipients} recipients")
    for segment in found:
        share = segment.size / recipients if recipients else 0.0
        distinctive = sorted(segment.profile.items(), key=lambda kv: -kv[1]["z"])[:3]
        traits = ", ".join(f"{label} z={values['z']:+.1f}" for label, values in distinctive)
        out.print(f"  {segment.name:<28} {segment.size:>8} ({share:.0%})  {traits}", markup=False)
