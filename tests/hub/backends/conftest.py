"""Fixtures of the backend tests; each test gets its own Redis key prefix."""

from __future__ import annotations

import uuid

import pytest

from .helpers import Clock


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def clock() -> Clock:
    return Clock()
