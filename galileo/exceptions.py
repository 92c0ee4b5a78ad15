"""One exception hierarchy for the whole package.

Every error the SDK raises on purpose is a :class:`GalileoLoggerException`. It is raised only where a user
can fix the cause before traffic flows: constructing a logger or a configuration directly. Code that runs
inside a request handler on the SDK's behalf (the middleware's request logger, ``@log``) never raises; it
logs and degrades to a no-op logger. Messages never contain an API key or a token.

How such code logs a failure (:func:`_describe`): one line, at WARNING (``@log``, ``galileo_context``) or
ERROR (the middleware's request logger), once, naming the cause; the traceback follows at DEBUG. The cause is
the message of the SDK's own exceptions, written to name the setting to fix and never a secret (e.g.
``GALILEO_TIMEOUT: must be a number > 0; got 'soon'``); of any other exception only its type, since its
message could quote the user's data.
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


def _describe(exc: BaseException | None) -> str:
    """``exc`` for a one-line log message (see the module docstring): never a secret nor the user's data."""
    if exc is None:
        return "unknown cause"
    if isinstance(exc, GalileoLoggerException):
        return str(exc)
    return f"{type(exc).__name__}; its traceback is logged at DEBUG"
