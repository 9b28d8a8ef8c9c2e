"""The library's exception types, so that callers (the CLI among them) tell a bad request from a
broken file by type, never by matching message text.

Each is also a ``ValueError`` (what the library raised before these types existed), so existing
``except ValueError`` code keeps working.
"""
from __future__ import annotations

__all__ = ["StrattackError", "ConfigError", "DataError", "ModelError"]


class StrattackError(ValueError):
    """Base of the library's own errors."""


class ConfigError(StrattackError):
    """A value the user chose is invalid (an option, a configuration file entry, an image index
    or class that does not exist): fix the request. The CLI shows it as a usage error."""


class DataError(StrattackError):
    """Data, weights or a store on disk cannot be used as they are: fix or replace the file."""


class ModelError(StrattackError):
    """The user's model code failed (its module does not import, or its factory raises): the
    message names the file and line, so that the fix is in that code."""
