"""The HighLevel commands' building blocks.

``options`` holds what the commands share: where the changes go, with which tokens, and the
option stacks of every command that sends requests. ``jobs.cli`` assembles the commands for
the ``ghl_migrate.cli`` entry point. Each only parses options and calls the library
(``jobs.api``), so everything a command does is callable from Python.
"""

__all__: list[str] = []
