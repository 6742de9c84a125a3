"""The local demo site (webmail + CRM) and the demo workflow that runs against it."""

from __future__ import annotations

from pathlib import Path

from local.demo.seed import DEMO_EMAIL, DEMO_PASSWORD
from local.demo.server import DemoServer, serve_demo
from local.demo.site import DemoState, create_demo_app

WORKFLOW_PATH = Path(__file__).parent / "workflows" / "investor-crm-demo.json"

__all__ = [
    "DEMO_EMAIL",
    "DEMO_PASSWORD",
    "WORKFLOW_PATH",
    "DemoServer",
    "DemoState",
    "create_demo_app",
    "serve_demo",
]
