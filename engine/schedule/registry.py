"""The campaigns a daemon runs: loaded from files, reloaded when they change.

An invalid change never replaces a running campaign: the error is reported and the last valid
version keeps running until the file is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import SpecError
from engine.spec import CampaignSpec, campaign_files, load_campaign


@dataclass(frozen=True)
class Reload:
    """What a reload did: campaigns added or changed, removed, and files refused (with why)."""

    changed: tuple[CampaignSpec, ...] = ()
    removed: tuple[str, ...] = ()
    refused: tuple[SpecError, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changed or self.removed or self.refused)


@dataclass
class CampaignRegistry:
    """Campaign specs by name, each the last valid version of its file."""

    campaigns: Path
    templates: Path
    specs: dict[str, CampaignSpec] = field(default_factory=dict)
    _by_file: dict[Path, str] = field(default_factory=dict)

    def reload(self) -> Reload:
        """Re-read every campaign file; keep the last valid version of any that became invalid."""
        changed: list[CampaignSpec] = []
        refused: list[SpecError] = []
        seen: set[Path] = set()
        for path in campaign_files(self.campaigns):
            seen.add(path)
            try:
                spec = load_campaign(path, self.templates)
            except SpecError as exc:
                refused.append(exc)
                continue
            owner = next((p for p, n in self._by_file.items() if n == spec.name and p != path), None)
            if owner is not None and owner in seen:
                refused.append(SpecError(path, "campaign.name", f"{spec.name!r} is already the name of {owner}",
                                         line=spec.line_of("campaign.name")))
                continue
            previous_name = self._by_file.get(path)
            if previous_name is not None and previous_name != spec.name:
                self.specs.pop(previous_name, None)
            current = self.specs.get(spec.name)
            if current is None or current.spec_hash != spec.spec_hash:
                changed.append(spec)
            self.specs[spec.name] = spec
            self._by_file[path] = spec.name
        removed = []
        for path in [p for p in self._by_file if p not in seen]:
            name = self._by_file.pop(path)
            if name not in self._by_file.values():
                self.specs.pop(name, None)
                removed.append(name)
        return Reload(tuple(changed), tuple(removed), tuple(refused))
