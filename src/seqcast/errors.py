"""The one base of every error a user must fix: its message names the file, key, column or row."""

from __future__ import annotations


class SeqcastError(ValueError):
    """Bad params, bad data or an unusable model: never retried, reported without a traceback."""
