"""One exception hierarchy for the whole package.

Every error the SDK raises on purpose is a :class:`GalileoLoggerException`. It is raised only where a user
can fix the cause before traffic flows: constructing a logger or a configuration directly. Code that runs
inside a request handler on the SDK's behalf (the middleware's request logger, ``@log``) never raises; it
logs and degrades to a no-op logger. Messages never contain an API key or a token.
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "GalileoLoggerException"]


class GalileoLoggerException(Exception):
    """Root of every exception the galileo package raises on purpose."""


class ConfigurationError(GalileoLoggerException, ValueError):
    """A configuration value is invalid.

    ``variable`` names the environment variable (or constructor argument) to fix; ``value`` carries the
    offending value, except for secrets, which are never kept here.
    """

    def __init__(self, variable: str, message: str, value: object = None) -> None:
        self.variable = variable
        self.value = value
        super().__init__(f"{variable}: {message}")
