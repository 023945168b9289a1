from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_EVENTS = ROOT.parent / "shared" / "data" / "events"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
