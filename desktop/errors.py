"""The one place that turns exceptions into what a user reads.

Core errors (``ModelError``, ``StoreError`` and this layer's ``BastionError``) carry messages
written for users. Anything else is a bug; callers decide whether to show a generic message with
a log reference (the GUI) or let it propagate (tests).
"""

from __future__ import annotations

from bastion.models.errors import ModelError
from bastion.store.errors import StoreError


class BastionError(Exception):
    """An application-level failure whose message a user can act on."""


USER_ERRORS: tuple[type[BaseException], ...] = (BastionError, ModelError, StoreError)


def user_message(error: BaseException) -> str | None:
    """The message to show for a known error, or None for a bug."""
    if isinstance(error, USER_ERRORS):
        return str(error)
    if isinstance(error, OSError) and error.filename:
        reason = error.strerror or str(error)
        return f"{reason}: {error.filename}. Check that the path exists and that you may read it."
    return None
