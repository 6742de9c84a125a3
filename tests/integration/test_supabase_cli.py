"""The migrations apply with the real Supabase CLI, the way a Supabase user deploys them.

`supabase migration up --db-url` runs every file in supabase/migrations/ and records it in
supabase_migrations.schema_migrations. The CLI comes from the npm registry through npx (cached
in ~/.npm after the first run). Node.js is a hard requirement of this suite: without npx the
test fails rather than skipping, so a CI image without Node cannot pass silently.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from local.schema import (
    MIGRATIONS,
    migration_files,
)

CLI = "supabase@2.117.0"
SUPABASE_DIR = MIGRATIONS.parent
AEF_TABLES = ["aef_documents", "aef_executions", "aef_execution_steps", "aef_checkpoints",
              "aef_logs", "aef_events", "aef_commands", "aef_execution_secrets",
              "aef_rate_limits", "aef_idempotency_keys"]


def npx() -> str:
    found = shutil.which("npx")
    if found is None:
        pytest.fail("npx (Node.js >= 18) is required to run the Supabase CLI; install Node.js")
    return found


def supabase(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [npx(), "--prefer-offline", "--yes", CLI, *args], cwd=cwd, capture_output=True,
        text=True, timeout=600, stdin=subprocess.DEVNULL, check=False)


def cli_db_url(conninfo: str) -> str:
    """The CLI wants a URL; local Postgres has no TLS."""
    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = quote(str(info.get("user") or "postgres"))
    password = f":{quote(str(info['password']))}" if info.get("password") else ""
    host = info.get("host") or "127.0.0.1"
    port = info.get("port") or 5432
    return f"postgresql://{user}{password}@{host}:{port}/{info['dbname']}?sslmode=disable"


@pytest.fixture
def shim_only_db(supabase_cluster: Any) -> Iterator[str]:
    """A fresh database that looks like a new Supabase project, no AEF (as `postgres`)."""
    name = f"aef_cli_{uuid.uuid4().hex[:10]}"
    try:
        yield supabase_cluster.database(name, migrate=False).postgres
    finally:
        supabase_cluster.drop(name)


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A copy of supabase/ (config.toml + migrations): the CLI writes supabase/.temp."""
    shutil.copytree(SUPABASE_DIR, tmp_path / "supabase",
                    ignore=shutil.ignore_patterns(".temp", ".branches", "*.log"))
    return tmp_path


def test_cli_applies_the_migrations(shim_only_db: str, project_dir: Path) -> None:
    result = supabase(["migration", "up", "--db-url", cli_db_url(shim_only_db)], project_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in migration_files():
        assert f"Applying migration {path.name}" in result.stdout + result.stderr

    with psycopg.connect(shim_only_db) as conn:
        for table in AEF_TABLES:
            found = conn.execute("select to_regclass(%s)", (f"public.{table}",)).fetchone()
            assert found is not None and found[0] is not None, table
        versions = [r[0] for r in conn.execute(
            "select version from supabase_migrations.schema_migrations order by version")]
    assert versions == [path.name.split("_", 1)[0] for path in migration_files()]

    again = supabase(["migration", "up", "--db-url", cli_db_url(shim_only_db)], project_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Applying migration" not in again.stdout + again.stderr


def _keys(table: dict[str, Any], prefix: str = "") -> dict[str, type]:
    out: dict[str, type] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = type(value)
    return out


def test_config_toml_is_a_valid_cli_config(tmp_path: Path) -> None:
    """Every key we set exists, with the same type, in the config this CLI version writes."""
    result = supabase(["init", "--force"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    template = tomllib.loads((tmp_path / "supabase" / "config.toml").read_text())
    ours = tomllib.loads((SUPABASE_DIR / "config.toml").read_text())

    known, used = _keys(template), _keys(ours)
    unknown = sorted(set(used) - set(known))
    assert unknown == [], f"keys the CLI does not know: {unknown}"
    mistyped = sorted(k for k in used if used[k] is not known[k])
    assert mistyped == [], mistyped
    assert ours["project_id"] == "aef"
    assert ours["db"]["major_version"] == 15
    assert ours["realtime"]["enabled"] is True
    assert ours["auth"]["enabled"] is True
