"""Tracking: the HTTP side of Kairos: event ingest, clicks, opens, one-click unsubscribes, previews."""
