"""Tracking: the click, open and one-click unsubscribe endpoints, and the preview page."""
