"""HighLevel-specific job kinds, and the sandbox that fakes the HighLevel API."""

from __future__ import annotations

from .associations import AssociationsJob
from .routes import Api

__all__ = ["Api", "AssociationsJob"]
