"""Tracking: the HTTP side of Kairos (ingest, clicks, opens, unsubscribes, previews)."""
