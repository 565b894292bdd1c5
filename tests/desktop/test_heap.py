"""Settling the heap exempts start-up objects from collections, and only them."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from bastion.desktop.heap import settle_heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def thawed() -> Iterator[None]:
    """The test process must not keep its objects frozen for the tests that follow."""
    yield
    gc.unfreeze()


def test_objects_alive_at_settling_are_skipped_and_later_garbage_is_still_collected(
        thawed: None) -> None:
    gc.collect()
    before = cycle()  # garbage already, but still waiting for a collection when settled
    frozen = settle_heap()
    assert frozen == gc.get_freeze_count() and frozen > 1000
    after = cycle()

    gc.collect()
    assert after() is None  # made after settling: collected as usual
    assert before() is not None  # exempt: the one-off cost the module's docstring names
