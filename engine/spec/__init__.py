"""Campaign files -> validated, frozen :class:`CampaignSpec` objects."""

from engine.spec.load import campaign_files, find_campaign, load_campaign
from engine.spec.model import CampaignSpec, Variant
from engine.spec.values import parse_duration

__all__ = ["CampaignSpec", "Variant", "campaign_files", "find_campaign", "load_campaign", "parse_duration"]
