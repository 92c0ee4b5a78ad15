"""``python -m galileo.collector``: the same command line as ``galileo-collector``."""

from __future__ import annotations

import sys

from galileo.collector.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
