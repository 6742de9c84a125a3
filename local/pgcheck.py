"""Is a PostgreSQL server usable at a URL, and if not, what should the person do?

`python -m local.pgcheck URL [--verbose]` exits 0 when the server answers (scripts/bootstrap.sh
uses it); `explain` turns a failed connection into one line that names the cause (a malformed
URL, nothing listening, a refused login, a missing database, an unknown host) and the fix.
"""

from __future__ import annotations

import re
import sys

import psycopg
from psycopg import conninfo

CONNECT_TIMEOUT_SECONDS = 3
URL_SHAPE = "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
_LOGIN_REFUSED = re.compile(r'authentication failed|role ".*" does not exist|no pg_hba\.conf entry'
                            r"|not permitted to log in|no password supplied")


class Unusable(Exception):
    """The server at the URL cannot be used; the message says why and what to do."""


def where(url: str) -> str:
    """`host:port` of a connection URL (never its password), for messages."""
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "?"
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    return f"{host}:{params.get('port') or 5432}"


def explain(url: str, exc: psycopg.Error, *, name: str = "DATABASE_URL",
            fallback: str = "--embedded-postgres") -> str:
    """One line: what went wrong connecting to `url` (given as `name`) and the way out."""
    text = str(exc).strip()
    server = where(url)
    if isinstance(exc, psycopg.ProgrammingError):  # libpq could not parse it
        first = text.splitlines()[0] if text else type(exc).__name__
        return f"{name} is not a PostgreSQL connection URL ({first}); expected {URL_SHAPE}"
    fatal = re.search(r"FATAL:\s+(.*)", text)
    lines = text.splitlines() or [type(exc).__name__]
    reason = (fatal[1] if fatal else lines[0].rsplit(" failed: ", 1)[-1]).strip()
    if "Connection refused" in text:
        return (f"Nothing accepts connections at {server} ({name}): start PostgreSQL there, "
                f"point {name} at a running server, or pass {fallback}")
    if re.search(r'database ".*" does not exist', text):
        return f"PostgreSQL at {server} refused the login: {reason}; create it or fix {name}"
    if _LOGIN_REFUSED.search(text):
        return (f"PostgreSQL at {server} refused the login: {reason}; fix the user or "
                f"password in {name}")
    if "resolve host" in text or "translate host name" in text:
        return (f"The host in {name} ({server}) is unknown; fix {name} or pass {fallback}")
    if "timeout expired" in text:
        return (f"PostgreSQL at {server} does not answer (no reply in "
                f"{CONNECT_TIMEOUT_SECONDS} s): check {name}, or pass {fallback}")
    return f"Cannot connect to PostgreSQL at {server} ({name}): {reason}"


def check(url: str, **names: str) -> None:
    """Connect and run `select 1`; raises `Unusable` with `explain`'s line."""
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        raise Unusable(explain(url, exc, **names)) from None


def main(argv: list[str]) -> int:
    url = argv[1]
    try:
        check(url)
    except Unusable as exc:
        if "--verbose" in argv:
            print(f"PostgreSQL is not usable: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
