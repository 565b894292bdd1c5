"""Offline environment variables, set before any ML library is imported."""

from __future__ import annotations

import os

OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # Progress bars of model loading would scribble over the CLI's own output.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


def enforce_offline_environment() -> None:
    """Force the offline variables; a user's own value cannot switch the hub back on."""
    os.environ.update(OFFLINE_ENVIRONMENT)
