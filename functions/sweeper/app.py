"""Scheduled sweeper: fail executions whose runner died and stop their tasks, expire
checkpoints (EventBridge, every minute)."""

from __future__ import annotations

import json
import logging
from typing import Any

from aef import service
from aef.deadline import deadline, lambda_deadline
from aef.logs import configure_logging


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    configure_logging()
    with deadline(lambda_deadline(context)):  # task stops end before the Lambda timeout
        result = service.sweep()
    logging.getLogger("aef.sweeper").info("sweep %s", json.dumps(result))
    return result


if __name__ == "__main__":  # runnable locally: python -m functions.sweeper.app
    print(json.dumps(handler({}, None)))
