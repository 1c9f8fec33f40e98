"""The one exception root of the project.

Every error rastos raises on purpose derives from :class:`RastosError`, so callers can catch
the project's failures without catching programming errors.
"""

from __future__ import annotations

__all__ = ["ConfigError", "RastosError"]


class RastosError(Exception):
    """Root of every error raised by rastos on purpose."""


class ConfigError(RastosError):
    """A configuration file or flag is invalid; the message names the field."""
