"""How often a collection's documents actually changed, from what the library keeps.

The library keeps no history of its syncs: each document row records only when it was last
indexed (``indexed_at``) and when its row last changed. So this counts documents last indexed
after the collection's first day — files added or changed since it was built — and the distinct
days on which that happened. A file changed many times counts once (on its last change), and a
file deleted since leaves no trace: these are lower bounds, and the report says so.
"""

from __future__ import annotations

import time
from typing import Any

DAY_S = 86400.0


def change_history(library: Any, name: str, now: float | None = None) -> dict[str, Any]:
    """What the library's records say of how often collection ``name`` changed (plain data)."""
    now = time.time() if now is None else now
    created = float(library.collection(name).created)
    stamps = sorted(d.indexed_at for d in library.documents(name) if d.indexed_at is not None)
    first = stamps[0] if stamps else created
    later = [t for t in stamps if t > first + DAY_S]
    days = sorted({time.strftime("%Y-%m-%d", time.localtime(t)) for t in later})
    return {"based_on": "documents.indexed_at (the library keeps no sync history)",
            "created": created, "documents": len(stamps), "first_indexed": first,
            "changed_later": len(later), "change_days": len(days),
            "last_change": later[-1] if later else None, "age_days": round((now - created) / DAY_S, 1)}


def history_sentence(history: dict[str, Any]) -> str:
    """The history in one sentence, saying what it is based on."""
    age = float(history.get("age_days") or 0.0)
    span = f"{age:.0f} days" if age >= 1.5 else "the day since it was created" if age >= 0.5 \
        else "the hours since it was created"
    n, later, days = history.get("documents", 0), history.get("changed_later", 0), history.get("change_days", 0)
    base = ("based on each document's last-indexed time, since the library keeps no sync history; "
            "a file changed several times counts once and deleted files are not seen")
    if not later:
        return (f"How often the collection actually changed: none of its {n} documents was "
                f"indexed again or added after its first day, over {span} ({base}).")
    return (f"How often the collection actually changed: {later} of its {n} documents were added "
            f"or changed after its first day, on {days} distinct day{'s' if days != 1 else ''} over "
            f"{span} — about one change day every {max(age, 1) / days:.0f} days ({base}).")
