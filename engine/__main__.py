"""``python -m engine`` is ``ghl-migrate``."""

from .cli import script

script()
