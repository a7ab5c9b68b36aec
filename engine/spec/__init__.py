"""Campaign files -> validated, frozen :class:`CampaignSpec` objects."""

from engine.spec.load import campaign_files, find_campaign, load_campaign, parse_duration
from engine.spec.model import CampaignSpec, Variant

__all__ = ["CampaignSpec", "Variant", "campaign_files", "find_campaign", "load_campaign", "parse_duration"]
