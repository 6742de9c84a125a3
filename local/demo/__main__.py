"""`python -m local.demo [--port N]`: serve the demo site in the foreground."""

from __future__ import annotations

import argparse

import uvicorn

from local.demo.seed import DEMO_EMAIL, DEMO_PASSWORD
from local.demo.site import create_demo_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    print(f"Demo site on http://{args.host}:{args.port}  (sign in: {DEMO_EMAIL} / {DEMO_PASSWORD})")
    uvicorn.run(create_demo_app(), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
