"""template.yaml, translated by the SAM translator (offline), read as an operator deploys it:
what would fail at deploy or run time, and what would leak."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from aef.http import CORS_ALLOW_HEADERS, CORS_EXPOSE_HEADERS
from aef.settings import Settings
from runner.__main__ import RunnerSettings
from tests.deploy.cfn import (
    ROOT,
    Resolver,
    as_list,
    managed_policies,
    matches,
    source,
    statements,
    translated,
)

DEPLOY_DOC = ROOT / "docs" / "deploy.md"
FULL_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:aef/functions-db-a1B2c3"
RUNNER_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:aef/runner-db-Zz9Yy8"
REQUIRED = {"DatabaseUrlSecretArn": FULL_ARN, "RunnerDatabaseUrlSecretArn": RUNNER_ARN,
            "SupabaseUrl": "https://abcd.supabase.co", "RunnerImageUri": "img:1",
            "SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}
PARTIAL_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:aef/functions-db"
KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SECRET_PARAMETERS = ("DatabaseUrlSecretArn", "RunnerDatabaseUrlSecretArn",
                     "RunnerListenUrlSecretArn", "JwtSecretArn")
# Every CPU/memory pair Fargate accepts (MiB), from the ECS developer guide's task size table.
FARGATE_MEMORY = {
    "256": {512, 1024, 2048},
    "512": set(range(1024, 4096 + 1, 1024)),
    "1024": set(range(2048, 8192 + 1, 1024)),
    "2048": set(range(4096, 16384 + 1, 1024)),
    "4096": set(range(8192, 30720 + 1, 1024)),
    "8192": set(range(16384, 61440 + 1, 4096)),
    "16384": set(range(32768, 122880 + 1, 8192)),
}
ALL_OPTIONS = {"JwtSecretArn": FULL_ARN, "RunnerListenUrlSecretArn": FULL_ARN,
               "SecretsKmsKeyArn": KMS_KEY, "JwksUrl": "https://x.supabase.co/jwks"}


def resources(**params: Any) -> dict[str, Any]:
    return Resolver(translated(), {**REQUIRED, **params}).resources()


def of_type(found: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: body for name, body in found.items() if body["Type"] == kind}


def runner_container(found: dict[str, Any]) -> dict[str, Any]:
    (container,) = found["RunnerTaskDefinition"]["Properties"]["ContainerDefinitions"]
    return dict(container)


# 1 -------------------------------------------------------------------------------------------
def test_the_cluster_has_no_capacity_providers_and_insights_waits_for_the_documented_role(
        ) -> None:
    for params in ({}, {"ContainerInsights": "enabled"}):
        cluster = resources(**params)["RunnerCluster"]["Properties"]
        assert "CapacityProviders" not in cluster
        assert "DefaultCapacityProviderStrategy" not in cluster
        assert not of_type(resources(**params), "AWS::ECS::ClusterCapacityProviderAssociations")
    parameter = source()["Parameters"]["ContainerInsights"]
    assert parameter["Default"] == "disabled"
    assert "service-linked role" in parameter["Description"]
    doc = DEPLOY_DOC.read_text()
    assert "aws iam create-service-linked-role --aws-service-name ecs.amazonaws.com" in doc


# 2 -------------------------------------------------------------------------------------------
def test_every_runner_size_is_a_cpu_memory_pair_fargate_accepts() -> None:
    parameters = source()["Parameters"]
    sizes = parameters["RunnerSize"]["AllowedValues"]
    assert parameters["RunnerSize"]["Default"] in sizes
    assert not {"RunnerCpu", "RunnerMemory"} & set(parameters)  # no free-form pair
    for size in sizes:
        task = resources(RunnerSize=size)["RunnerTaskDefinition"]["Properties"]
        cpu, memory = task["Cpu"], int(task["Memory"])
        assert memory in FARGATE_MEMORY[cpu], (size, cpu, memory)
        assert memory >= 2048, size  # Chromium


# 3 -------------------------------------------------------------------------------------------
def _walk(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [node, *(x for v in node.values() for x in _walk(v))]
    if isinstance(node, list):
        return [x for v in node for x in _walk(v)]
    return [node]


@pytest.mark.parametrize("params", [{}, ALL_OPTIONS], ids=["defaults", "every-option"])
def test_no_secret_value_reaches_a_function_or_task_environment(params: dict[str, Any]) -> None:
    template = source()
    assert not [n for n, p in template["Parameters"].items() if p.get("NoEcho")], \
        "a NoEcho parameter is a secret value passed through CloudFormation"
    found = resources(**params)
    environments: dict[str, dict[str, Any]] = {}
    for name, body in of_type(found, "AWS::Lambda::Function").items():
        environments[name] = body["Properties"]["Environment"]["Variables"]
    container = runner_container(found)
    assert "Secrets" not in container  # ECS would put the value in the task's environment
    environments["runner"] = {e["Name"]: e["Value"] for e in container["Environment"]}
    for owner, variables in environments.items():
        for key, value in variables.items():
            text = json.dumps(value)
            assert "{{resolve:" not in text, (owner, key)
            assert key not in ("DATABASE_URL", "AEF_JWT_SECRET", "AEF_RUNNER_TOKEN",
                               "AEF_DB_LISTEN_URL"), (owner, key)
            if any(word in key for word in ("SECRET", "PASSWORD", "TOKEN", "DATABASE_URL")):
                assert key.endswith("_SECRET_ARN"), (owner, key)
                assert value in ("", FULL_ARN, RUNNER_ARN), (owner, key, value)
    assert "AEF_DATABASE_URL_SECRET_ARN" in environments["runner"]
    for name in of_type(found, "AWS::Lambda::Function"):
        assert "AEF_DATABASE_URL_SECRET_ARN" in environments[name], name


def test_every_environment_variable_is_a_setting_the_code_reads() -> None:
    """A typo in a variable name would silently leave the setting at its default."""
    found = resources(**ALL_OPTIONS)
    names = {f"AEF_{n.upper()}" for n in RunnerSettings.model_fields} | {"DATABASE_URL"}
    assert {f"AEF_{n.upper()}" for n in Settings.model_fields} <= names
    variables = {key for body in of_type(found, "AWS::Lambda::Function").values()
                 for key in body["Properties"]["Environment"]["Variables"]}
    variables |= {e["Name"] for e in runner_container(found)["Environment"]}
    assert variables - names == set()


# 11 ------------------------------------------------------------------------------------------
def test_secret_parameters_accept_only_full_arns() -> None:
    parameters = source()["Parameters"]
    for name in SECRET_PARAMETERS:
        pattern = parameters[name]["AllowedPattern"]
        assert matches(pattern, FULL_ARN), name
        assert not matches(pattern, PARTIAL_ARN), name  # would be AccessDenied at run time
        assert not matches(pattern, FULL_ARN + "*"), name
        if parameters[name].get("Default") == "":
            assert matches(pattern, "")


@pytest.mark.parametrize("params", [{}, ALL_OPTIONS], ids=["defaults", "every-option"])
def test_secret_grants_are_exactly_the_configured_arns_and_their_key(
        params: dict[str, Any]) -> None:
    found = resources(**params)
    secret_values = {FULL_ARN, RUNNER_ARN}
    readers: dict[str, set[str]] = {}
    decrypt: dict[str, list[dict[str, Any]]] = {}
    for owner, statement in statements(found):
        actions = set(as_list(statement["Action"]))
        if any(a.startswith("secretsmanager:") for a in actions):
            assert actions == {"secretsmanager:GetSecretValue"}, owner
            resources_ = as_list(statement["Resource"])
            assert resources_ and all(r in secret_values for r in resources_), (owner, resources_)
            readers.setdefault(owner, set()).update(resources_)
        if any(a.startswith("kms:") for a in actions):
            assert actions == {"kms:Decrypt"}
            decrypt.setdefault(owner, []).append(statement)
    assert "RunnerExecutionRole" not in readers  # ECS injects no secret
    assert readers["RunnerTaskRole"] == ({RUNNER_ARN, FULL_ARN} if params else {RUNNER_ARN})
    assert readers["ApiSecretsPolicy"] == {FULL_ARN}  # database (+ the JWT secret if given)
    assert readers["SweeperSecretsPolicy"] == {FULL_ARN}
    if params:
        assert set(decrypt) == set(readers)
        for owner, granted in decrypt.items():
            (statement,) = granted
            assert statement["Resource"] == KMS_KEY, owner
            via = statement["Condition"]["StringEquals"]["kms:ViaService"]
            assert via == {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}
    else:
        assert decrypt == {}
    # the sweeper verifies no tokens: it may read the database secret and nothing else
    sweeper = found["SweeperFunctionRole"]
    assert managed_policies(sweeper) == ["SweeperSecretsPolicy"]
    assert found["SweeperFunction"]["Properties"]["Environment"]["Variables"][
        "AEF_JWT_SECRET_ARN"] == ""


def test_every_function_role_can_read_its_database_secret() -> None:
    found = resources(**ALL_OPTIONS)
    for name in of_type(found, "AWS::Lambda::Function"):
        role = found[f"{name}Role"]
        attached = managed_policies(role)
        assert attached in (["ApiSecretsPolicy"], ["SweeperSecretsPolicy"]), name


# 12 ------------------------------------------------------------------------------------------
def test_the_api_preflight_allows_if_none_match_and_exposes_rate_limits() -> None:
    api = translated()["Resources"]["Api"]["Properties"]["Body"]
    cors = api["x-amazon-apigateway-cors"]
    allowed = {h.lower() for h in cors["allowHeaders"]}
    exposed = {h.lower() for h in cors["exposeHeaders"]}
    assert "if-none-match" in allowed
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "retry-after",
            "etag", "x-request-id"} <= exposed
    # the functions' own CORS (local stack, direct invocations) says exactly the same
    assert allowed == {h.lower() for h in CORS_ALLOW_HEADERS}
    assert exposed == {h.lower() for h in CORS_EXPOSE_HEADERS}


# 7, 9, 10, 14, 16 ----------------------------------------------------------------------------
def test_runner_network_and_architecture_parameters() -> None:
    parameters = source()["Parameters"]
    assert parameters["RunnerArchitecture"]["Default"] == "ARM64"
    for value in ("DISABLED", "ENABLED"):
        found = resources(RunnerAssignPublicIp=value)
        for body in of_type(found, "AWS::Lambda::Function").values():
            variables = body["Properties"]["Environment"]["Variables"]
            assert variables["AEF_ECS_ASSIGN_PUBLIC_IP"] == str(value == "ENABLED").lower()
    task = resources(RunnerArchitecture="X86_64")["RunnerTaskDefinition"]["Properties"]
    assert task["RuntimePlatform"]["CpuArchitecture"] == "X86_64"


def test_functions_reserve_concurrency_and_hold_one_connection_each() -> None:
    found = resources()
    total = 0
    for name, body in of_type(found, "AWS::Lambda::Function").items():
        props = body["Properties"]
        reserved = props.get("ReservedConcurrentExecutions")
        assert isinstance(reserved, int) and reserved >= 1, name
        total += reserved
        assert props["Environment"]["Variables"]["AEF_DB_POOL_MAX"] == "1"
    assert total == 4 * 10 + 20 + 1  # WriteConcurrency x4 + ReadConcurrency + the sweeper
    assert resources(WriteConcurrency=0, ReadConcurrency=0)["SweeperFunction"][
        "Properties"].get("ReservedConcurrentExecutions") is None
    env = {e["Name"]: e["Value"] for e in runner_container(found)["Environment"]}
    assert env["AEF_DB_POOL_MAX"] == 2 and env["AEF_DB_LISTEN"] == "false"
    env = {e["Name"]: e["Value"] for e in runner_container(resources(**ALL_OPTIONS))[
        "Environment"]}
    assert env["AEF_DB_LISTEN"] == "true" and env["AEF_DB_LISTEN_URL_SECRET_ARN"] == FULL_ARN


def test_the_api_invokes_snapstart_versions_through_their_alias() -> None:
    """SnapStart applies to published versions only: every API route must invoke the `live`
    alias (a route on the unqualified function would run $LATEST, never restored)."""
    found = resources()
    functions = of_type(found, "AWS::Lambda::Function")
    api = {name for name in functions if name != "SweeperFunction"}
    for name in api:
        assert functions[name]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert functions["SweeperFunction"]["Properties"]["SnapStart"] == {"ApplyOn": "None"}
    (http_api,) = of_type(found, "AWS::ApiGatewayV2::Api").values()
    targets = [json.dumps(op["x-amazon-apigateway-integration"]["uri"])
               for ops in http_api["Properties"]["Body"]["paths"].values()
               for op in ops.values()]
    assert targets and all(re.search(r"\$\{(\w+)FunctionAliaslive\}", t) for t in targets)
    assert {re.search(r"\$\{(\w+)Aliaslive\}", t)[1] for t in targets} == api  # type: ignore[index]
    for permission in of_type(found, "AWS::Lambda::Permission").values():
        if permission["Properties"]["Principal"] == "apigateway.amazonaws.com":
            assert permission["Properties"]["FunctionName"]["Ref"].endswith("Aliaslive")
    off = of_type(resources(FunctionSnapStart="None"), "AWS::Lambda::Function")
    assert {body["Properties"]["SnapStart"]["ApplyOn"] for body in off.values()} == {"None"}
    # the shared code ships in the layer: a deploy that changes only the layer must publish
    # (and snapshot) a new version, or the alias would keep serving the old code
    declared = source()["Resources"]
    assert all(declared[name]["Properties"].get("AutoPublishAliasAllProperties") is True
               for name in functions)


def test_only_the_ecs_calls_the_code_makes_are_granted() -> None:
    found = resources()
    ecs: dict[str, set[str]] = {}
    for owner, statement in statements(found):
        for action in as_list(statement["Action"]):
            if action.startswith("ecs:"):
                ecs.setdefault(owner, set()).add(action)
    assert ecs == {
        "ExecuteFunctionRole": {"ecs:RunTask", "ecs:TagResource", "ecs:StopTask"},
        "StopFunctionRole": {"ecs:StopTask"},
        "SweeperFunctionRole": {"ecs:StopTask"},  # it stops lost runners' tasks
    }


def test_the_screenshot_bucket_outlives_the_stack() -> None:
    bucket = translated()["Resources"]["ScreenshotBucket"]
    assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"
    assert "s3 rb" in DEPLOY_DOC.read_text()


def test_every_parameter_is_explained_in_the_deploy_guide() -> None:
    doc = DEPLOY_DOC.read_text()
    missing = [name for name in source()["Parameters"] if f"`{name}`" not in doc]
    assert missing == []
