"""Test harness: a throwaway database per run with the shim + migrations applied.

DATABASE_URL names the server (default: the local 127.0.0.1:5432); the database is created
at the start of the run and dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

ADMIN_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    from local.schema import apply_schema, create_database, drop_database

    name = f"aef_test_{uuid.uuid4().hex[:10]}"
    url = create_database(ADMIN_URL, name)
    apply_schema(url)
    yield url
    drop_database(ADMIN_URL, name)


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[object]:
    from aef.db import Database, set_database

    database = Database(database_url, min_size=1, max_size=8)
    set_database(database)
    yield database
    set_database(None)
    database.close()
