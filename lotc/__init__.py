"""LOTC: Low Orbit Task Cannon, a distributed process manager."""
from __future__ import annotations

__version__ = "0.1.0"
