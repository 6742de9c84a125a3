"""Bring a plain PostgreSQL database to Supabase + AEF shape: shim, then the migrations.

Used by `aef dev` and by the test harness, so both run exactly what Supabase users apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
SHIM = ROOT / "local" / "shim.sql"
PARTITIONS = ROOT / "local" / "realtime" / "partitions.sql"
MIGRATIONS = ROOT / "supabase" / "migrations"


def migration_files() -> list[Path]:
    return sorted(MIGRATIONS.glob("*.sql"))


def apply_sql_file(url: str, path: Path) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(path.read_text())  # trusted file from this repo


def apply_fixture(conn: psycopg.Connection[Any]) -> None:
    """The Supabase fixture, then today's realtime.messages partitions (Realtime makes them)."""
    conn.execute(SHIM.read_text())  # trusted files from this repo
    conn.execute(PARTITIONS.read_text())


def apply_schema(url: str, *, shim: bool = True) -> list[str]:
    """Apply the shim (optional) and every migration; returns the files applied, in order."""
    applied = []
    if shim:
        with psycopg.connect(url, autocommit=True) as conn:
            apply_fixture(conn)
        applied.append(SHIM.name)
    for path in migration_files():
        apply_sql_file(url, path)
        applied.append(path.name)
    return applied


def create_database(admin_url: str, name: str) -> str:
    """Create an empty database next to `admin_url`'s and return its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}"')
    return with_dbname(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def with_dbname(url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo("", **info)
