"""The two kinds of task failure the fleet treats differently."""

from __future__ import annotations


class TransientError(Exception):
    """A failure that may pass by itself (a dependency down, a timeout): retried with backoff."""


class PermanentError(Exception):
    """Bad input that no retry can fix: fails at once and goes to the dead-letter queue."""
