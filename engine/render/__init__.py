"""Rendering: sandboxed Jinja templates into MIME email."""
