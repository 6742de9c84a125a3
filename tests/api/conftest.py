"""API tests: the real functions through their Mangum handlers, real Postgres, ECS via moto.

Tokens are HS256 with the legacy secret (the JWKS path is proven in tests/unit/test_auth.py).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest

SECRET = "aef-api-tests-legacy-hs256-secret-0123456789"
os.environ.setdefault("AEF_JWT_SECRET", SECRET)
os.environ.setdefault("AEF_LAUNCHER", "ecs")
os.environ.setdefault("AEF_STOP_ACK_TIMEOUT_SECONDS", "1.0")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def make_token(user_id: str, *, email: str | None = None, ttl: int = 600,
               **overrides: Any) -> str:
    now = int(time.time())
    payload = {"sub": user_id, "role": "authenticated", "aud": "authenticated",
               "email": email or f"{user_id[:8]}@example.com", "iat": now, "exp": now + ttl,
               "session_id": str(uuid.uuid4())}
    payload.update(overrides)
    return jwt.encode(payload, os.environ["AEF_JWT_SECRET"], algorithm="HS256")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


class Api:
    """Calls the functions' Mangum handlers with API Gateway v2 events, routed by the HttpApi
    routes of template.yaml (as API Gateway and the local gateway route them)."""

    def __init__(self) -> None:
        from local.gateway import RouteTable, load_template, routes_from_template

        self.table = RouteTable(routes_from_template(load_template()))

    def handler_for(self, method: str, path: str) -> Any:
        """The handler of the route for (method, path); for a method no route has, the
        handler of a route with this path (so the function itself answers it)."""
        import importlib

        matched = self.table.match(method, path)
        spec = matched[0] if matched else next(
            (m[0] for r in self.table.routes if (m := self.table.match(r.method, path))), None)
        if spec is None:
            raise LookupError(f"no function serves {path}")
        return getattr(importlib.import_module(spec.module), spec.attribute)

    def call(self, method: str, path: str, token: str | None = None, body: Any = None,
             headers: dict[str, str] | None = None, query: dict[str, str] | None = None
             ) -> Reply:
        from tests.apigw import apigw_event, invoke

        handler = self.handler_for(method, path)
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["authorization"] = f"Bearer {token}"
        status, resp_headers, payload = invoke(
            handler, apigw_event(method, path, headers=hdrs, body=body, query=query))
        return Reply(status, {k.lower(): v for k, v in resp_headers.items()}, payload)


@dataclass
class ApiUser:
    id: str
    token: str
    claims: dict[str, Any]


@pytest.fixture(scope="session")
def moto_ecs() -> Iterator[Any]:
    """A moto ECS control plane with the runner's cluster and task definition."""
    from moto import mock_aws

    with mock_aws():
        import boto3

        from aef.launcher import EcsLauncher, set_launcher
        from aef.settings import get_settings

        get_settings.cache_clear()
        settings = get_settings()
        ecs = boto3.client("ecs", region_name="us-east-1")
        ec2 = boto3.client("ec2", region_name="us-east-1")
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        # moto names a task's ENI only in a VPC with DNS hostnames (as real Fargate VPCs have)
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
        sg = ec2.create_security_group(GroupName="aef-runner", Description="runner",
                                       VpcId=vpc)["GroupId"]
        ecs.create_cluster(clusterName=settings.ecs_cluster)
        ecs.register_task_definition(
            family=settings.ecs_task_definition, requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc", cpu="1024", memory="2048",
            containerDefinitions=[{"name": settings.ecs_container_name,
                                   "image": "aef-runner:test", "memory": 2048}])
        settings.ecs_subnets = [subnet]
        settings.ecs_security_groups = [sg]
        set_launcher(EcsLauncher(settings, client=ecs))
        yield ecs
        set_launcher(None)


@pytest.fixture(scope="session")
def api(db: Any, moto_ecs: Any) -> Api:
    return Api()


@pytest.fixture
def new_user(db: Any) -> Any:
    from tests.integration.factories import create_user

    def make() -> ApiUser:
        user = create_user(db)
        return ApiUser(str(user.id), make_token(str(user.id), email=user.email), user.claims)

    return make
