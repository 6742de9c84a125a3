"""Lambda SnapStart, as the Python runtime drives it: a function process configured by secret
ARNs (moto's Secrets Manager) is imported, its before-snapshot hooks run, a secret is rotated,
then its after-restore hooks run. The restored process must serve the rotated values and
draw its own random numbers; the warm-up must have served a request without credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

from tests.deploy.aws import process_env, secretsmanager_server
from tests.deploy.cfn import ROOT

OLD_DB = "postgresql://aef_functions.abcd:old-pw@db.invalid:6543/postgres"
NEW_DB = "postgresql://aef_functions.abcd:new-pw@db.invalid:6543/postgres"
OLD_JWT = "old-hs256-secret-0123456789abcdef0123456789abcdef"
NEW_JWT = "new-hs256-secret-0123456789abcdef0123456789abcdef"

CHILD = """
import json, random, sys
from snapshot_restore_py import get_after_restore, get_before_snapshot
import functions.logs.app as function

statuses = [f(*a, **k) for f, a, k in get_before_snapshot()]
settings = function.app.state.aef_settings
print(json.dumps({"statuses": statuses, "db": settings.database_url,
                  "jwt": settings.jwt_secret.get_secret_value()}), flush=True)
sys.stdin.readline()  # the secrets are rotated while the snapshot sleeps
random.seed(7)
for f, a, k in get_after_restore():
    f(*a, **k)
from aef.db import get_database
from aef.settings import get_settings
settings = function.app.state.aef_settings
print(json.dumps({"db": settings.database_url, "jwt": settings.jwt_secret.get_secret_value(),
                  "cached": get_settings() is settings, "pool": get_database().url,
                  "random": random.random(), "seeded": random.Random(7).random()}), flush=True)
"""


def test_a_restored_function_reads_rotated_secrets_and_reseeds() -> None:
    with secretsmanager_server() as (endpoint, client):
        suffix = uuid.uuid4().hex[:8]
        db_arn = client.create_secret(Name=f"aef/db-{suffix}", SecretString=OLD_DB)["ARN"]
        jwt_arn = client.create_secret(Name=f"aef/jwt-{suffix}", SecretString=OLD_JWT)["ARN"]
        env = process_env(endpoint, AEF_DATABASE_URL_SECRET_ARN=db_arn,
                          AEF_JWT_SECRET_ARN=jwt_arn, PYTHONPATH=str(ROOT))
        child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, cwd=ROOT, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        assert child.stdin is not None and child.stdout is not None
        try:
            snapshot: dict[str, Any] = json.loads(child.stdout.readline() or "null")
            assert snapshot is not None, child.stderr.read() if child.stderr else ""
            client.put_secret_value(SecretId=db_arn, SecretString=NEW_DB)
            client.put_secret_value(SecretId=jwt_arn, SecretString=NEW_JWT)
            out, err = child.communicate("\n", timeout=60)
        finally:
            child.kill()
        assert child.returncode == 0, err
        restored = json.loads(out.strip().splitlines()[-1])

    assert snapshot["statuses"] == [401]  # served end to end before the snapshot, no secret used
    assert (snapshot["db"], snapshot["jwt"]) == (OLD_DB, OLD_JWT)
    assert (restored["db"], restored["jwt"]) == (NEW_DB, NEW_JWT)
    assert restored["cached"] and restored["pool"] == NEW_DB
    assert restored["random"] != restored["seeded"]


def test_without_the_runtime_library_no_hook_is_registered() -> None:
    """Locally and in the runner there is no snapshot: importing a function registers nothing
    and changes nothing."""
    code = ("import sys; sys.modules['snapshot_restore_py'] = None\n"
            "from aef import snapshot\nimport functions.transform.app as f\n"
            "print(snapshot.install(f.app, f.handler))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AEF_JWT_SECRET": OLD_JWT}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
