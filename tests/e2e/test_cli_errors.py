"""Every mistake a person can make with the CLI ends in one clear line and a non-zero exit.

Each case runs the real `aef` (or `python -m runner`) in a subprocess, as typed in a shell,
and checks the exit status, that stderr is exactly one line saying what to do, and that no
traceback was printed anywhere.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from psycopg import conninfo

from local.state import StateDir
from tests.e2e.conftest import ADMIN_URL, ROOT, aef, clean_env


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_url(**changes: str) -> str:
    """The test server's URL with some parts changed (user, port, dbname ...)."""
    params = {**conninfo.conninfo_to_dict(ADMIN_URL), **changes}
    host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
    return f"postgresql://{params['user']}@{host}:{port}/{params.get('dbname', 'postgres')}"


@dataclass
class Case:
    args: list[str]
    line: str  # a regex the one stderr line must match
    code: int = 1
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # name -> content, in the temp dir


CASES = {
    "garbage DATABASE_URL": Case(
        ["dev", "--port", "0"], r"^aef: DATABASE_URL is not a PostgreSQL connection URL .*"
        r"expected postgresql://", env={"DATABASE_URL": "garbage"}),
    "refused login": Case(
        ["dev", "--port", "0"], r"^aef: PostgreSQL at .* refused the login: role "
        r"\"nobody_here\" does not exist; fix the user or password in DATABASE_URL$",
        env={"DATABASE_URL": server_url(user="nobody_here")}),
    "missing database": Case(
        ["dev", "--port", "0"], r"^aef: PostgreSQL at .* refused the login: database "
        r"\"no_such_db\" does not exist", env={"DATABASE_URL": server_url(dbname="no_such_db")}),
    "closed port": Case(
        ["dev", "--port", "0"], r"^aef: Nothing accepts connections at 127\.0\.0\.1:\d+ "
        r"\(DATABASE_URL\).* or pass --embedded-postgres$",
        env={"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres"}),
    "closed port given as an option": Case(
        ["dev", "--port", "0", "--database-url",
         f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres"],
        r"^aef: Nothing accepts connections .*\(--database-url\).*--embedded-postgres$"),
    "unknown database host": Case(
        ["dev", "--port", "0"], r"^aef: The host in DATABASE_URL \(nohost\.invalid:5432\) is "
        r"unknown", env={"DATABASE_URL": "postgresql://postgres@nohost.invalid/postgres"}),
    "demo stack that cannot start": Case(
        ["demo", "--yes", "--port", "0"], r"^aef: The local stack did not start: DATABASE_URL "
        r"is not a PostgreSQL connection URL .*\(log: .*dev\.log\)$",
        env={"DATABASE_URL": "garbage"}),
    "workflow that does not exist": Case(
        ["demo", "--yes", "--workflow", "/nope.json"], r"^aef: No workflow file at /nope\.json$"),
    "workflow that is a folder": Case(
        ["demo", "--yes", "--workflow", "{tmp}"], r"^aef: .* is a folder; --workflow takes a "
        r"JSON file$"),
    "workflow that is not JSON": Case(
        ["demo", "--yes", "--workflow", "{tmp}/notes.txt"], r"^aef: .*notes\.txt is not JSON "
        r"\(Expecting value: line 1 column 1", files={"notes.txt": "just words\n"}),
    "workflow that is not an object": Case(
        ["demo", "--yes", "--workflow", "{tmp}/list.json"], r"^aef: .*list\.json holds a JSON "
        r"list, not an SOP or workflow object$", files={"list.json": "[1, 2]"}),
    "workflow that is binary": Case(
        ["demo", "--yes", "--workflow", "{tmp}/shot.jpg"], r"^aef: .*shot\.jpg is not a text "
        r"file", files={"shot.jpg": "\udcff\udcd8\udcff"}),
    "demo without a terminal and without --yes": Case(
        ["demo"], r"^aef: Checkpoints are asked in the terminal, and stdin is not one; .*--yes"),
    "negative token lifetime": Case(
        ["token", "--ttl", "-100"], r"^aef token: argument --ttl: -100 is not a lifetime in "
        r"seconds from 1 to 604800 \(a week\) \(see aef token --help\)$", code=2),
    "zero token lifetime": Case(["token", "--ttl", "0"], r"^aef token: argument --ttl: ", code=2),
    "token lifetime that is not a number": Case(
        ["token", "--ttl", "soon"], r"^aef token: argument --ttl: 'soon' is not", code=2),
    "token for an unknown user": Case(
        ["token", "--user", "nobody@example.com"], r"^aef: Unknown user nobody@example\.com; "
        r"the dev users are demo@aef\.local, reviewer@aef\.local$"),
    "port out of range": Case(
        ["dev", "--port", "99999"], r"^aef dev: argument --port: 99999 is not a TCP port", code=2),
    "demo timeout below a second": Case(
        ["demo", "--yes", "--timeout", "-5"], r"^aef demo: argument --timeout: -5 is not",
        code=2),
    "unknown command": Case(["deploy"], r"^aef: argument COMMAND: invalid choice: 'deploy'",
                            code=2),
    "no command": Case([], r"^aef: the following arguments are required: COMMAND", code=2),
    "host that does not exist": Case(
        ["dev", "--host", "nohost.invalid", "--port", "0"],
        r"^aef: Cannot listen on nohost\.invalid: .*pass --host"),
    "state folder that cannot be created": Case(
        ["--state-dir", "/proc/aef-state", "dev"], r"^aef: Cannot create the state folder "
        r"/proc/aef-state: .*pass --state-dir"),
    "invalid setting": Case(
        ["token"], r"^aef: invalid settings: AEF_SIGNED_URL_SECONDS: Input should be a valid "
        r"integer", env={"AEF_SIGNED_URL_SECONDS": "soon"}),
    "setting that is not JSON": Case(
        ["token"], r"^aef: invalid settings: AEF_CORS_ORIGINS: not valid JSON \(give a JSON "
        r"list or comma-separated values\)$",
        env={"AEF_CORS_ORIGINS": "[http://x"}),
    "signing key file that is not a key": Case(
        ["token"], r"^aef: .*signing-key\.pem is not an EC private key in PEM; delete it",
        files={"state/keys/signing-key.pem": "not a key\n"}),
    "watch without a stack": Case(
        ["watch", "0b5ba6fd-5f5e-4a53-9a4e-4c14b3f0c2d1"], r"^aef: No running stack found "
        r"\(.*stack\.json\); start one with `aef dev`$"),
}


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    tmp_path.chmod(0o755)
    yield tmp_path


def run(case: Case, workdir: Path) -> subprocess.CompletedProcess[str]:
    for name, content in case.files.items():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_bytes(content.encode(errors="surrogateescape"))
    args = [a.replace("{tmp}", str(workdir)) for a in case.args]
    state = StateDir(workdir / "state")
    if args[:1] == ["--state-dir"]:  # the case names its own
        return subprocess.run([sys.executable, "-m", "local.cli", *args], capture_output=True,
                              text=True, timeout=120, env={**clean_env(), **case.env},
                              cwd=ROOT, check=False, stdin=subprocess.DEVNULL)
    return aef(state, *args, timeout=120, env=case.env)


def assert_one_line(result: subprocess.CompletedProcess[str], pattern: str, code: int) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert result.returncode == code, (result.returncode, output)


@pytest.mark.parametrize("name", list(CASES))
def test_cli_mistake_ends_in_one_line(name: str, workdir: Path) -> None:
    case = CASES[name]
    assert_one_line(run(case, workdir), case.line, case.code)


def test_a_port_in_use_is_named(workdir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = aef(StateDir(workdir / "state"), "dev", "--port", str(port), "--database-url",
                     ADMIN_URL)
    assert_one_line(result, rf"^aef: 127\.0\.0\.1:{port} is in use; stop what listens there "
                            r"or pass --port$", 1)


def test_a_valid_token_lifetime_is_honoured(workdir: Path) -> None:
    import jwt

    result = aef(StateDir(workdir / "state"), "token", "--ttl", "120")
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120


def runner(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AEF_")}
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True,
                          text=True, timeout=60, env={**base, **(env or {})}, cwd=ROOT,
                          check=False, stdin=subprocess.DEVNULL)


def test_runner_help_prints_its_usage() -> None:
    result = runner("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m runner")
    for variable in ("AEF_EXECUTION_ID", "AEF_RUNNER_TOKEN", "DATABASE_URL"):
        assert variable in result.stdout


@pytest.mark.parametrize(("args", "env", "pattern"), [
    ((), {}, r"^runner: AEF_EXECUTION_ID is not set "
             r"\(see python -m runner --help\)$"),
    (("--execution", "x"), {}, r"^python -m runner: unrecognized arguments: --execution x "
                               r"\(see python -m runner --help\)$"),
    ((), {"AEF_EXECUTION_ID": "x", "AEF_RUNNER_TOKEN": "secret-token-value",
          "AEF_HEADLESS": "perhaps"},
     r"^runner: AEF_HEADLESS: Input should be a valid boolean"),
    ((), {"AEF_EXECUTION_ID": "00000000-0000-0000-0000-000000000001",
          "AEF_RUNNER_TOKEN": "secret-token-value", "DATABASE_URL": "garbage"},
     r'^runner: DATABASE_URL is not a PostgreSQL connection URL \(missing "=" after '
     r'"garbage"'),
    ((), {"AEF_EXECUTION_ID": "00000000-0000-0000-0000-000000000001",
          "AEF_RUNNER_TOKEN": "secret-token-value", "DATABASE_URL": ADMIN_URL},
     r'"message": "The database cannot be used: relation \\"aef_executions\\" does not '
     r'exist"'),
])
def test_runner_misconfigured_ends_in_one_line(args: tuple[str, ...], env: dict[str, str],
                                               pattern: str) -> None:
    result = runner(*args, env=env)
    assert_one_line(result, pattern, 2)
    assert "secret-token-value" not in result.stdout + result.stderr
