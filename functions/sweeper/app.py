"""Scheduled sweeper: fail executions whose runner died, expire checkpoints (EventBridge)."""

from __future__ import annotations

import json
import logging
from typing import Any

from aef import service
from aef.http import configure_logging


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    configure_logging()
    result = service.sweep()
    logging.getLogger("aef.sweeper").info("sweep %s", json.dumps(result))
    return result


if __name__ == "__main__":  # runnable locally: python -m functions.sweeper.app
    print(json.dumps(handler({}, None)))
