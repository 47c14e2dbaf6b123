"""Where the twin keeps what must survive between runs but never enters git."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """Per-user cache: built binaries live here, keyed by version."""
    override = os.environ.get("TWIN_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "confidential-gpu-twin"


def state_root() -> Path:
    """Running clusters keep their certificates, data, PIDs and logs under here."""
    override = os.environ.get("TWIN_STATE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "confidential-gpu-twin"
