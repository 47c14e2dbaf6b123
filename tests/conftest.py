"""Test-wide settings: where ../shared is, and how the collection is importable."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The team's shared material (real CRDs, reference notes) lives beside the checkout; one setting.
SHARED = Path(os.environ.get("CGPU_SHARED_DIR", REPO.parent / "shared"))
COLLECTIONS = REPO / "build" / "collections"

# ansible_collections.confidential.gpu resolves through build/collections (scripts/setup.sh links it).
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def shared_path(*parts) -> Path:
    """A path under ../shared, or a skip that says why the test cannot run without it."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the team's shared folder is needed (set CGPU_SHARED_DIR)")
    return path
