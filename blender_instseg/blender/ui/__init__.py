"""The sidebar panel and overlay drawing (see panel.py and overlay.py)."""

from __future__ import annotations

from .panel import classes

__all__ = ["classes"]
