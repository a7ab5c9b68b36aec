"""Campaign reports: message states, goal rate against the holdout with its lift and interval,
engagement, and splits by variant, channel and segment or tier; for the terminal, JSON and HTML."""

from engine.report.build import build_report, campaign_report
from engine.report.html import render_html, write_html
from engine.report.model import CampaignReport, report_json
from engine.report.terminal import print_report

__all__ = ["CampaignReport", "build_report", "campaign_report", "print_report", "render_html", "report_json",
           "write_html"]
