"""HighLevel commands for ``ghl-migrate``: ``validate``, ``plan``, ``run``, ``rollback``,
``report`` (``merge``, ``show``, ``html``) and ``sandbox``, gathered for the
``ghl_migrate.cli`` entry point (``engine.cli`` loads them).

Each lives in ``jobs.commands``; each only parses options, builds a ``RunConfig`` or
``SandboxConfig`` and calls the library: everything it does is callable from Python (see
``jobs.api``).
"""

from __future__ import annotations

from .commands.report import report_group
from .commands.rollback import rollback_command
from .commands.run import plan_command, run_command
from .commands.sandbox import sandbox_command
from .commands.validate import validate_command

__all__ = ["COMMANDS"]

COMMANDS = [
    validate_command,
    plan_command,
    run_command,
    rollback_command,
    sandbox_command,
    report_group,
]
