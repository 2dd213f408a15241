"""Test-wide settings and fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import zapnb
from zapnb.schema import Schema

# Timing-based checks fail on shared 2-core machines for reasons unrelated to zapnb; the properties still run
# with their full number of examples.
settings.register_profile("zapnb", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("zapnb")


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[Callable[[Schema], zapnb.Database]]:
    """Opens a database in the test's directory with a schema deployed; closed after the test."""
    opened: list[zapnb.Database] = []

    def open_with(schema: Schema) -> zapnb.Database:
        database = zapnb.connect(tmp_path / "data")
        database.deploy(schema, progress=False)
        opened.append(database)
        return database

    yield open_with
    for database in opened:
        database.close()
