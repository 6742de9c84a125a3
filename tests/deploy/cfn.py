"""template.yaml as CloudFormation sees it: translated by the SAM translator, offline.

`translated()` runs the same transform `sam deploy` runs (no AWS call: the code URIs are
rewritten to S3 URIs as `sam package` would, and no managed policy is looked up), so tests
read the roles, functions and API that would really be created. `resolve()` then evaluates
the template's conditions for a given set of parameter values (Fn::If, Fn::Equals, Fn::Not,
Ref to parameters), so a test can ask "with a KMS key given, which statements exist?".
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


class _NoManagedPolicies:
    """The translator asks for AWS managed policy names only when a template uses them."""

    def load(self) -> dict[str, str]:
        return {}


@cache
def _translated() -> dict[str, Any]:
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse(TEMPLATE.read_text())
    for resource in template["Resources"].values():
        props = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://packaged-artifacts/{props[key].strip('/')}"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the translator's pseudo params
    return dict(transform(template, {}, _NoManagedPolicies()))


def translated() -> dict[str, Any]:
    """A fresh copy of the translated template (tests may mutate it)."""
    return copy.deepcopy(_translated())


def source() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    return dict(yaml_parse(TEMPLATE.read_text()))


def defaults(template: Mapping[str, Any]) -> dict[str, Any]:
    return {name: spec.get("Default") for name, spec in template["Parameters"].items()}


class Resolver:
    """Evaluates conditions for parameter values; unknown intrinsics are kept as they are."""

    def __init__(self, template: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        self.template = template
        self.params = {**defaults(template), **params}
        self.conditions = {name: self._condition(body)
                           for name, body in (template.get("Conditions") or {}).items()}

    def _condition(self, body: Any) -> bool:
        if isinstance(body, dict) and len(body) == 1:
            ((fn, args),) = body.items()
            if fn == "Fn::Not":
                return not self._condition(args[0])
            if fn == "Fn::Equals":
                left, right = (self.value(a) for a in args)
                return str(left) == str(right)
            if fn == "Condition":
                return self._condition(self.template["Conditions"][args])
            if fn == "Fn::And":
                return all(self._condition(a) for a in args)
            if fn == "Fn::Or":
                return any(self._condition(a) for a in args)
        raise ValueError(f"unsupported condition {body!r}")

    def value(self, node: Any) -> Any:
        """`node` with Fn::If decided, parameters substituted and AWS::NoValue removed."""
        if isinstance(node, list):
            return [v for v in (self.value(item) for item in node) if v is not _NO_VALUE]
        if isinstance(node, dict):
            if len(node) == 1:
                ((fn, args),) = node.items()
                if fn == "Fn::If":
                    name, yes, no = args
                    return self.value(yes if self.conditions[name] else no)
                if fn == "Ref" and args == "AWS::NoValue":
                    return _NO_VALUE
                if fn == "Ref" and args in self.params:
                    return self.params[args]
                if fn == "Fn::FindInMap":
                    table, key, field = (self.value(a) for a in args)
                    return self.template["Mappings"][table][key][field]
            out = {}
            for key, item in node.items():
                resolved = self.value(item)
                if resolved is not _NO_VALUE:
                    out[key] = resolved
            return out
        return node

    def resources(self) -> dict[str, Any]:
        """Resources that exist for these parameters (their Condition holds), resolved."""
        return {name: self.value(body) for name, body in self.template["Resources"].items()
                if "Condition" not in body or self.conditions[body["Condition"]]}


_NO_VALUE = object()


def statements(resources: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(resource name, statement) for every IAM statement of every role and managed policy."""
    for name, body in resources.items():
        props = body.get("Properties") or {}
        documents = []
        if body["Type"] == "AWS::IAM::Role":
            documents = [p["PolicyDocument"] for p in props.get("Policies") or []]
        elif body["Type"] == "AWS::IAM::ManagedPolicy":
            documents = [props["PolicyDocument"]]
        for document in documents:
            for statement in document["Statement"]:
                yield name, statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def managed_policies(role: Mapping[str, Any]) -> list[str]:
    """The logical ids of this template's managed policies attached to `role`."""
    return [arn["Ref"] for arn in role["Properties"].get("ManagedPolicyArns") or []
            if isinstance(arn, dict) and "Ref" in arn]


def matches(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text) is not None
