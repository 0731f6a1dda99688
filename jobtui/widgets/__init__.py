"""Render-only widgets: they never do I/O; screens feed them values."""
