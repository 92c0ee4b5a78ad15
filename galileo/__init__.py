"""galileo: distributed traces of LLM and agent work, from Starlette and FastAPI services to Galileo."""

from __future__ import annotations

from galileo._version import __version__

__all__ = ["__version__"]
