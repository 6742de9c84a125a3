"""The runner pool on AWS (template.yaml): a service of `python -m runner --pool` workers whose
desired count follows the metric the sweeper publishes, and a drain that fits in StopTimeout.
The metric itself goes to moto's CloudWatch, as the sweeper sends it."""

from __future__ import annotations

from typing import Any

from aef.settings import Settings
from tests.deploy.cfn import as_list, statements
from tests.deploy.test_template import resources


def pool_container(found: dict[str, Any]) -> dict[str, Any]:
    (container,) = found["PoolTaskDefinition"]["Properties"]["ContainerDefinitions"]
    return dict(container)


def test_pool_workers_run_the_runner_image_in_pool_mode_and_drain_within_stop_timeout() -> None:
    found = resources(PoolSlots=6)
    container = pool_container(found)
    runner = found["RunnerTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert container["Image"] == runner["Image"] and container["Command"] == ["--pool"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["AEF_POOL_SLOTS"] == 6
    assert set(env) <= {f"AEF_{n.upper()}" for n in Settings.model_fields}
    assert "Secrets" not in container and "AEF_RUNNER_TOKEN" not in env
    # SIGTERM -> drain -> hand back must end before ECS sends SIGKILL
    assert float(env["AEF_POOL_DRAIN_SECONDS"]) + 20 <= container["StopTimeout"] <= 120
    task = found["PoolTaskDefinition"]["Properties"]
    assert task["TaskRoleArn"] == found["RunnerTaskDefinition"]["Properties"]["TaskRoleArn"]


def test_the_pool_scales_on_the_sweepers_metric_between_its_floor_and_ceiling() -> None:
    found = resources(PoolMinWorkers=2, PoolMaxWorkers=7)
    service = found["PoolService"]["Properties"]
    assert service["DesiredCount"] == 2 and service["LaunchType"] == "FARGATE"
    target = found["PoolScalableTarget"]["Properties"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 7)
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    policy = found["PoolScalingPolicy"]["Properties"]
    metric = policy["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
    assert metric["MetricName"] == "PoolUtilization"
    sweeper_env = found["SweeperFunction"]["Properties"]["Environment"]["Variables"]
    assert metric["Namespace"] == sweeper_env["AEF_POOL_METRIC_NAMESPACE"]


def test_only_the_sweeper_may_publish_and_only_to_its_namespace() -> None:
    found = resources()
    grants = [(owner, s) for owner, s in statements(found)
              if any(a.startswith("cloudwatch:") for a in as_list(s["Action"]))]
    assert [owner for owner, _ in grants] == ["SweeperFunctionRole"]
    (_, statement), = grants
    assert as_list(statement["Action"]) == ["cloudwatch:PutMetricData"]
    namespace = statement["Condition"]["StringEquals"]["cloudwatch:namespace"]
    sweeper_env = found["SweeperFunction"]["Properties"]["Environment"]["Variables"]
    assert namespace == sweeper_env["AEF_POOL_METRIC_NAMESPACE"]


def test_the_sweeper_publishes_pool_utilization_to_cloudwatch(monkeypatch: Any) -> None:
    import boto3
    from moto import mock_aws

    from aef import service
    from aef.settings import get_settings

    monkeypatch.setenv("AEF_POOL_METRIC_NAMESPACE", "AEF/test-stack")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    get_settings.cache_clear()
    try:
        with mock_aws():
            service._publish_pool_demand({"live_workers": 2, "total_slots": 8, "active": 5,
                                          "waiting": 1})
            cloudwatch = boto3.client("cloudwatch", region_name=get_settings().aws_region)
            names = {m["MetricName"] for m in cloudwatch.list_metrics(
                Namespace="AEF/test-stack")["Metrics"]}
    finally:
        get_settings.cache_clear()
    assert names == {"PoolUtilization", "PoolSlotsNeeded"}
