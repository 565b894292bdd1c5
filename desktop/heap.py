"""Keep the cyclic garbage collector off the objects a long-running process loads once.

Once torch, transformers and sentence-transformers are imported, the window's process tracks
about 500,000 objects, and every full (generation 2) collection walks all of them while holding
the interpreter: 176-313 ms on an idle 2-core machine, more under load. The window freezes that
long in the middle of a streamed answer, and a request to ``bastion serve`` waits as long.
Modules, classes and functions loaded at start-up live as long as the process, so ``gc.freeze``
moves them to the permanent generation, which no collection visits; objects made later are
collected as before. The cost is that garbage already waiting at that moment is never freed, a
one-off bounded by the collector's thresholds. (``bench/gui_stall_bench.py`` prints a full
collection's time before and after.)
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def settle_heap() -> int:
    """Exempt every object alive now from future collections; returns how many are exempt."""
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("%d start-up objects exempted from garbage collection", frozen)
    return frozen
