"""The OTLP sink fixture for the export tests (see otlp_sink.py)."""

from __future__ import annotations

from otlp_sink import otlp_sink

__all__ = ["otlp_sink"]
