"""Errors from the store layer. Every message says what happened and what to do."""

from __future__ import annotations


class StoreError(Exception):
    """Base of all store-layer errors; ``str(error)`` is a message a user can act on."""
