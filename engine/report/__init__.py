"""Campaign reports: message states, goal rate against the holdout with its lift and interval,
engagement, and splits by variant, channel and segment or tier; for the terminal, JSON and HTML."""

from engine.report.build import build_report
from engine.report.model import CampaignReport, report_json

__all__ = ["CampaignReport", "build_report", "report_json"]
