"""Real servers for the tests: a private redis-server and a PostgreSQL cluster on loopback."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def redis_server():
    pytest.fail("redis_server fixture not written yet")


@pytest.fixture(scope="session")
def postgres_server():
    pytest.fail("postgres_server fixture not written yet")
