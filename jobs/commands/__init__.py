"""The HighLevel commands, one module per command or closely related pair.

``options`` holds what they share (where the changes go, with which tokens, the option
stacks of every command that sends requests); ``run`` holds ``run`` and ``plan``, then
``validate``, ``rollback``, ``sandbox`` and ``report``. ``jobs.cli`` assembles them for the
``ghl_migrate.cli`` entry point. Each only parses options and calls the library
(``jobs.api``), so everything a command does is callable from Python.
"""

__all__: list[str] = []
