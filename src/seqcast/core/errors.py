"""The errors a user must fix; each message names the file, key, column or row."""

from __future__ import annotations


class SeqcastError(ValueError):
    """Bad params, bad data or an unusable model: never retried, reported without a traceback."""


class ConfigError(SeqcastError):
    """A params file that cannot drive the pipeline; the message names the key."""


class DataError(SeqcastError):
    """Raw data that cannot be used; the message names the file, column or row."""


class ValidationFailed(SeqcastError):
    """Raw data that failed its expectations; the message lists each failure."""


class StoreError(SeqcastError):
    """The MLflow store cannot be used as it is (read-only, missing); the message says where."""
