"""Exit 0 if a PostgreSQL server answers at the given URL (used by scripts/bootstrap.sh)."""

from __future__ import annotations

import sys

import psycopg


def main(argv: list[str]) -> int:
    url = argv[1]
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        if "--verbose" in argv:
            print(f"PostgreSQL is not reachable at {url}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
