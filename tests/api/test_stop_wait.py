"""DELETE /stop waiting for a live runner: a few plain reads with a growing pause (not a
locking transaction every 100 ms), then the forced backstop; and an acknowledged stop ends as
soon as the runner writes `cancelled`."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from aef.db import Database, get_database, set_database
from aef.settings import get_settings
from tests.api.test_sweeper_and_actions import started


class CountingDatabase(Database):
    """The real database, with a count of the transactions each role opens."""

    def __init__(self, url: str) -> None:
        super().__init__(url, min_size=0, max_size=4)
        self.roles: list[str] = []

    @contextmanager
    def _transaction(self, identity: Mapping[str, str], *, check_user: bool = False
                     ) -> Iterator[Any]:
        self.roles.append(identity["role"])
        with super()._transaction(identity, check_user=check_user) as conn:
            yield conn


@contextmanager
def counted(db: Database) -> Iterator[CountingDatabase]:
    previous = get_database()
    counting = CountingDatabase(db.url)
    set_database(counting)
    try:
        yield counting
    finally:
        set_database(previous)
        counting.close()


def test_a_silent_runner_costs_a_few_reads_then_the_stop_is_forced(
        api: Any, db: Any, new_user: Any) -> None:
    user = new_user()
    execution_id, _runner = started(api, db, user)  # claimed, lease live, never answers
    timeout = get_settings().stop_ack_timeout_seconds
    assert timeout == 1.0
    with counted(db) as counting:
        reply = api.call("DELETE", f"/api/aef/stop/{execution_id}", user.token)
    assert reply.status == 200 and reply.body == {"status": "stopped", "cleanup": "forced"}
    # rate limit + cancelling, the wait, then the forced cancel (as the service)
    waits = counting.roles[2:-1]
    assert counting.roles[:2] == ["aef_api", "aef_api"] and counting.roles[-1] == "aef_service"
    # 0.1 + 0.2 + 0.4 + 0.3 s: four reads in a second (polling every 0.1 s took ten)
    assert 1 <= len(waits) <= 4, counting.roles


def test_an_acknowledging_runner_ends_the_wait_at_once(api: Any, db: Any, new_user: Any
                                                       ) -> None:
    user = new_user()
    execution_id, runner = started(api, db, user)

    def acknowledge() -> None:  # the runner sees `cancelling` and writes `cancelled`
        with runner.tx() as conn:
            conn.execute("update aef_executions set status = 'cancelled' where id = %s",
                         (execution_id,))

    timer = threading.Timer(0.25, acknowledge)
    timer.start()
    try:
        reply = api.call("DELETE", f"/api/aef/stop/{execution_id}", user.token)
    finally:
        timer.join()
    assert reply.status == 200 and reply.body == {"status": "stopped", "cleanup": "completed"}
    again = api.call("DELETE", f"/api/aef/stop/{execution_id}", user.token)
    assert again.body == {"status": "stopped", "cleanup": "completed"}
