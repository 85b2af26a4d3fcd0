"""The queue, retry, batch and concurrency rules of the deployment, read from template.yaml,
so the local driver and the deployed stack cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class TemplateError(RuntimeError):
    pass


@dataclass(frozen=True)
class QueueRules:
    """How one SQS queue feeds one function."""

    batch_size: int
    concurrency: int  # invocations in flight at once
    max_receive_count: int  # receives before the message moves to the DLQ
    visibility_timeout: int
    function_timeout: int


@dataclass(frozen=True)
class DeploymentRules:
    ingest: QueueRules
    cluster: QueueRules
    event_pattern: dict[str, Any]


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !GetAtt, !Sub...) as plain values."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    assert isinstance(node, yaml.MappingNode)
    return {suffix: loader.construct_mapping(node, deep=True)}


_CloudFormationLoader.add_multi_constructor("!", _tag)


def find_template(start: Path | None = None) -> Path:
    """template.yaml in the working directory or the nearest parent of this package's source."""
    candidates = [Path.cwd() / "template.yaml"]
    here = (start or Path(__file__)).resolve()
    candidates += [parent / "template.yaml" for parent in here.parents]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise TemplateError("template.yaml not found; run from the project directory or pass --template")


def load_template(path: Path) -> dict[str, Any]:
    """The template as plain data; a short-form tag becomes its long form ({"Ref": ...})."""
    template = yaml.load(path.read_text(encoding="utf-8"), Loader=_CloudFormationLoader)  # noqa: S506
    if not isinstance(template, dict):
        raise TemplateError(f"{path} is not a CloudFormation template")
    return template


def load_rules(path: Path) -> DeploymentRules:
    resources = load_template(path).get("Resources", {})
    try:
        return DeploymentRules(
            ingest=_queue_rules(resources, "EmbedFunction", "IngestQueueEvent", "IngestQueue"),
            cluster=_queue_rules(resources, "ClusterFunction", "ClusterQueueEvent", "ClusterQueue"),
            event_pattern=resources["IngestRule"]["Properties"]["EventPattern"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TemplateError(f"{path}: cannot read the deployment rules ({exc!r})") from None


def _queue_rules(resources: dict[str, Any], function: str, event: str, queue: str) -> QueueRules:
    function_props = resources[function]["Properties"]
    event_props = function_props["Events"][event]["Properties"]
    queue_props = resources[queue]["Properties"]
    concurrency = int(function_props["ReservedConcurrentExecutions"])
    scaling = event_props.get("ScalingConfig", {}).get("MaximumConcurrency")
    if scaling is not None:
        concurrency = min(concurrency, int(scaling))
    return QueueRules(
        batch_size=int(event_props["BatchSize"]),
        concurrency=concurrency,
        max_receive_count=int(queue_props["RedrivePolicy"]["maxReceiveCount"]),
        visibility_timeout=int(queue_props["VisibilityTimeout"]),
        function_timeout=int(function_props["Timeout"]),
    )
