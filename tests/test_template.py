"""template.yaml is the deployment: these tests read it and hold it to the rules of DESIGN.md and
of a production stack (what reaches the DLQ and when, who may write where, what is encrypted,
what is watched). `make template-check` runs SAM's, cfn-lint's and checkov's own rules on top."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest

from autotag.local.template_rules import load_template
from tests.conftest import EVENTS, ROOT, TEMPLATE

TEMPLATE_DATA = load_template(TEMPLATE)
RESOURCES: dict[str, Any] = TEMPLATE_DATA["Resources"]
GLOBAL_FUNCTION: dict[str, Any] = TEMPLATE_DATA["Globals"]["Function"]

# AWS's published deprecation dates (Lambda runtimes page); a runtime must outlive 2027.
RUNTIME_DEPRECATION = {
    "python3.11": dt.date(2027, 6, 30),
    "python3.12": dt.date(2028, 10, 31),
    "python3.13": dt.date(2029, 6, 30),
}


def resources_of(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def props(name: str) -> dict[str, Any]:
    return RESOURCES[name]["Properties"]  # type: ignore[no-any-return]


def ref(value: Any) -> str:
    """The logical id behind a !Ref or !GetAtt (X.Arn)."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "GetAtt" in value:
        target = value["GetAtt"]
        return str(target.split(".")[0] if isinstance(target, str) else target[0])
    raise AssertionError(f"not a reference: {value!r}")


FUNCTIONS = resources_of("AWS::Serverless::Function")


# --- queues, retries, concurrency -----------------------------------------------------------


def _sqs_event(function: str) -> dict[str, Any]:
    [event] = [e["Properties"] for e in props(function)["Events"].values() if e["Type"] == "SQS"]
    return event  # type: ignore[no-any-return]


def test_embed_function_concurrency_is_capped_at_five_on_both_sides() -> None:
    assert props("EmbedFunction")["ReservedConcurrentExecutions"] == 5
    assert _sqs_event("EmbedFunction")["ScalingConfig"]["MaximumConcurrency"] == 5


def test_each_embed_instance_keeps_to_its_share_of_the_rate_limits() -> None:
    env = props("EmbedFunction")["Environment"]["Variables"]

    assert int(env["AUTOTAG_EMBED_CONCURRENCY"]) == props("EmbedFunction")["ReservedConcurrentExecutions"]
    assert env["AUTOTAG_OPENAI_REQUESTS_PER_MINUTE"] == {"Ref": "OpenAIRequestsPerMinute"}
    assert env["AUTOTAG_OPENAI_TOKENS_PER_MINUTE"] == {"Ref": "OpenAITokensPerMinute"}


@pytest.mark.parametrize(("function", "queue"), [("EmbedFunction", "IngestQueue"), ("ClusterFunction", "ClusterQueue")])
def test_queue_feeding_a_function(function: str, queue: str) -> None:
    event = _sqs_event(function)
    queue_props = props(queue)

    assert ref(event["Queue"]) == queue
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["MaximumBatchingWindowInSeconds"] > 0
    # One try and two retries, then the DLQ.
    assert queue_props["RedrivePolicy"]["maxReceiveCount"] == 3
    # Lambda's guidance for SQS sources: never redeliver while an invocation may still run.
    assert queue_props["VisibilityTimeout"] >= 6 * props(function)["Timeout"]
    # A reserved concurrency below the poller's maximum throttles batches, burning receives.
    assert props(function)["ReservedConcurrentExecutions"] >= event["ScalingConfig"]["MaximumConcurrency"]
    dlq = ref(queue_props["RedrivePolicy"]["deadLetterTargetArn"])
    # Redriven messages must not expire before they are looked at.
    assert props(dlq)["MessageRetentionPeriod"] > queue_props["MessageRetentionPeriod"]


def test_cluster_function_is_sized_for_a_100k_document_workspace() -> None:
    cluster = props("ClusterFunction")
    # 100k x 1536 float32 vectors are 0.6 GB; several working copies and CPU share need more.
    assert cluster["MemorySize"] >= 4096
    assert cluster["Timeout"] == 900


# --- S3 and EventBridge ------------------------------------------------------------------------


def test_documents_bucket_is_private_versioned_encrypted_and_notifies_eventbridge() -> None:
    bucket = props("DocumentsBucket")

    assert bucket["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert RESOURCES["DocumentsBucket"]["DeletionPolicy"] == "Retain"


def test_bucket_policy_refuses_plain_http() -> None:
    [statement] = props("DocumentsBucketPolicy")["PolicyDocument"]["Statement"]

    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_rule_sends_created_and_deleted_objects_of_the_bucket_to_the_ingest_queue() -> None:
    rule = props("IngestRule")
    [target] = rule["Targets"]

    assert rule["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created", "Object Deleted"],
        "detail": {"bucket": {"name": [{"Ref": "DocumentsBucket"}]}},
    }
    assert ref(target["Arn"]) == "IngestQueue"
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert ref(target["DeadLetterConfig"]["Arn"]) == "IngestRuleDLQ"


@pytest.mark.parametrize(
    ("policy", "queue"), [("IngestQueuePolicy", "IngestQueue"), ("IngestRuleDLQPolicy", "IngestRuleDLQ")]
)
def test_only_the_ingest_rule_may_write_to_its_queues(policy: str, queue: str) -> None:
    [statement] = props(policy)["PolicyDocument"]["Statement"]

    assert [ref(q) for q in props(policy)["Queues"]] == [queue]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert ref(statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == "IngestRule"


# --- every failure is watched ---------------------------------------------------------------


def dead_letter_queues() -> set[str]:
    dlqs = {
        ref(q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
        for q in resources_of("AWS::SQS::Queue").values()
        if "RedrivePolicy" in q.get("Properties", {})
    }
    for rule in resources_of("AWS::Events::Rule").values():
        dlqs |= {ref(t["DeadLetterConfig"]["Arn"]) for t in rule["Properties"]["Targets"] if "DeadLetterConfig" in t}
    return dlqs


def alarms_on(namespace: str, metric: str, dimension: str) -> set[str]:
    watched = set()
    for alarm in resources_of("AWS::CloudWatch::Alarm").values():
        p = alarm["Properties"]
        if p["Namespace"] == namespace and p["MetricName"] == metric:
            watched |= {ref(d["Value"]) for d in p["Dimensions"] if d["Name"] == dimension}
    return watched


def test_every_dlq_has_an_alarm_on_its_depth() -> None:
    dlqs = dead_letter_queues()

    assert dlqs == {"IngestDLQ", "ClusterDLQ", "IngestRuleDLQ"}
    assert dlqs <= alarms_on("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName")


def test_every_queue_feeding_a_function_has_an_age_alarm() -> None:
    assert alarms_on("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName") >= {"IngestQueue", "ClusterQueue"}


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_queue_driven_functions_have_error_and_throttle_alarms(metric: str) -> None:
    assert alarms_on("AWS/Lambda", metric, "FunctionName") >= {"EmbedFunction", "ClusterFunction"}


def test_dashboard_shows_every_alarm_and_is_valid_json() -> None:
    body_template, variables = props("Dashboard")["DashboardBody"]["Sub"]
    names = set(re.findall(r"\$\{([^}]+)\}", body_template))
    # Every ${...} is a pseudo parameter, a variable of the Sub, a resource or a resource attribute.
    for name in names:
        assert name.startswith("AWS::") or name in variables or name.split(".")[0] in RESOURCES, name
    body = json.loads(re.sub(r"\$\{[^}]+\}", "x", body_template))
    [alarm_widget] = [w for w in body["widgets"] if w["type"] == "alarm"]

    assert {n.removesuffix(".Arn") for n in names if n.endswith(".Arn")} == set(resources_of("AWS::CloudWatch::Alarm"))
    assert len(alarm_widget["properties"]["alarms"]) == len(resources_of("AWS::CloudWatch::Alarm"))


# --- reprocessing -------------------------------------------------------------------------------


def test_reprocess_runs_one_pass_at_a_time_on_a_schedule_and_on_every_dlq_alarm() -> None:
    reprocess = props("ReprocessFunction")
    events = {e["Type"]: e["Properties"] for e in reprocess["Events"].values()}
    pattern = events["EventBridgeRule"]["Pattern"]
    dlq_alarms = {
        name
        for name, alarm in resources_of("AWS::CloudWatch::Alarm").items()
        if alarm["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        and ref(alarm["Properties"]["Dimensions"][0]["Value"]) in dead_letter_queues()
    }

    assert reprocess["ReservedConcurrentExecutions"] == 1
    assert reprocess["Timeout"] == 900
    assert events["Schedule"]["Schedule"] == {"Ref": "ReprocessSchedule"}
    assert pattern["source"] == ["aws.cloudwatch"] and pattern["detail-type"] == ["CloudWatch Alarm State Change"]
    assert pattern["detail"] == {"state": {"value": ["ALARM"]}}
    assert (
        {ref(r) for r in pattern["resources"]}
        == dlq_alarms
        == {"IngestDLQAlarm", "ClusterDLQAlarm", "IngestRuleDLQAlarm"}
    )
    assert "ReprocessFunction" in alarms_on("AWS/Lambda", "Errors", "FunctionName")


def test_reprocess_redrives_each_dlq_into_the_queue_it_came_from() -> None:
    env = props("ReprocessFunction")["Environment"]["Variables"]
    sources = {
        ref(q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]): name
        for name, q in resources_of("AWS::SQS::Queue").items()
        if "RedrivePolicy" in q.get("Properties", {})
    }
    [rule_target] = props("IngestRule")["Targets"]

    assert sources == {
        ref(env["AUTOTAG_INGEST_DLQ_URL"]): "IngestQueue",
        ref(env["AUTOTAG_CLUSTER_DLQ_URL"]): "ClusterQueue",
    }
    assert (
        ref(env["AUTOTAG_INGEST_QUEUE_URL"]) == "IngestQueue"
        and ref(env["AUTOTAG_CLUSTER_QUEUE_URL"]) == "ClusterQueue"
    )
    assert ref(env["AUTOTAG_INGEST_RULE_DLQ_URL"]) == ref(rule_target["DeadLetterConfig"]["Arn"])
    # Receiving and deleting only from the DLQs; sending only to the queues and the DLQs.
    for _, statement in (s for s in statements() if s[0] == "ReprocessFunction"):
        targets = {ref(r) for r in statement["Resource"]} if isinstance(statement["Resource"], list) else None
        if "sqs:ReceiveMessage" in statement["Action"]:
            assert targets == dead_letter_queues()
        if statement["Action"] == "sqs:SendMessage":
            assert targets == dead_letter_queues() | {"IngestQueue", "ClusterQueue"}


# --- IAM --------------------------------------------------------------------------------------


def statements() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, resource in RESOURCES.items():
        p = resource.get("Properties", {})
        documents = [s for s in p.get("Policies", []) if isinstance(s, dict) and "Statement" in s]
        documents += [
            s["PolicyDocument"] for s in p.get("Policies", []) if isinstance(s, dict) and "PolicyDocument" in s
        ]
        if "PolicyDocument" in p:
            documents.append(p["PolicyDocument"])
        for document in documents:
            for statement in document["Statement"]:
                yield name, statement


def test_no_allow_statement_uses_a_wildcard() -> None:
    for owner, statement in statements():
        if statement["Effect"] != "Allow":
            continue  # the TLS-only Deny covers s3:* on purpose
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert all("*" not in a for a in actions), (owner, actions)
        assert "*" not in resources, (owner, resources)


def _function_actions(function: str) -> set[str]:
    actions: set[str] = set()
    for owner, statement in statements():
        if owner == function:
            actions |= set(statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    return actions


def test_each_function_gets_only_the_actions_it_uses() -> None:
    assert _function_actions("EmbedFunction") == {
        "s3:GetObject",
        "s3:ListBucket",
        "sqs:SendMessage",
        "secretsmanager:GetSecretValue",
    }
    assert _function_actions("ClusterFunction") == {"secretsmanager:GetSecretValue"}
    assert _function_actions("ReprocessFunction") == {
        "s3:ListBucket",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:SendMessage",
        "secretsmanager:GetSecretValue",
    }
    assert _function_actions("MigrateFunction") == {"secretsmanager:GetSecretValue"}
    # The SQS event sources add their own receive/delete permissions, scoped to their queue.
    assert all("Policies" in props(f) for f in FUNCTIONS), "a function without Policies gets SAM's defaults"


def test_the_openai_key_is_only_ever_a_secret_arn() -> None:
    variables = dict(GLOBAL_FUNCTION["Environment"]["Variables"])
    for function in FUNCTIONS:
        variables |= props(function).get("Environment", {}).get("Variables", {})

    assert "OPENAI_API_KEY" not in variables
    assert "AUTOTAG_OPENAI_API_KEY_SECRET_ARN" in variables
    assert TEMPLATE_DATA["Parameters"]["OpenAIApiKeySecretArn"]["AllowedPattern"].count("secretsmanager") == 1


# --- database -----------------------------------------------------------------------------------


def test_aurora_is_encrypted_with_a_managed_secret_and_a_pgvector_with_hnsw() -> None:
    cluster = props("DatabaseCluster")
    default_version = TEMPLATE_DATA["Parameters"]["DatabaseEngineVersion"]["Default"]

    assert cluster["Engine"] == "aurora-postgresql"
    assert cluster["StorageEncrypted"] is True
    assert cluster["ManageMasterUserPassword"] is True
    assert "MasterUserPassword" not in cluster
    assert "ServerlessV2ScalingConfiguration" in cluster
    # HNSW came with pgvector 0.5.0: Aurora PostgreSQL 15.4+ and 16.1+.
    major, minor = (int(part) for part in default_version.split("."))
    assert (major, minor) >= (16, 1)


def test_functions_reach_the_database_only_through_a_tls_proxy() -> None:
    proxy = props("DatabaseProxy")
    env = GLOBAL_FUNCTION["Environment"]["Variables"]

    assert proxy["RequireTLS"] is True
    assert env["AUTOTAG_DATABASE_HOST"] == {"GetAtt": "DatabaseProxy.Endpoint"}
    assert env["AUTOTAG_DATABASE_SSLMODE"] in {"require", "verify-full"}


def test_database_security_group_admits_only_the_functions_and_the_proxy() -> None:
    ingress = resources_of("AWS::EC2::SecurityGroupIngress").values()
    sources = {
        ref(i["Properties"]["SourceSecurityGroupId"])
        for i in ingress
        if ref(i["Properties"]["GroupId"]) == "DatabaseSecurityGroup"
    }

    assert sources == {"FunctionSecurityGroup", "DatabaseSecurityGroup"}
    assert "SecurityGroupIngress" not in props("DatabaseSecurityGroup")
    assert all("CidrIp" not in i["Properties"] for i in ingress)


def test_every_function_runs_in_the_vpc() -> None:
    assert GLOBAL_FUNCTION["VpcConfig"]["SubnetIds"] == {"Ref": "PrivateSubnetIds"}
    assert all("VpcConfig" not in props(f) for f in FUNCTIONS)


def test_migrations_run_on_every_deploy_through_the_custom_resource() -> None:
    schema = RESOURCES["DatabaseSchema"]
    schema_props = schema["Properties"]

    assert schema["Type"].startswith("Custom::")
    assert ref(schema_props["ServiceToken"]) == "MigrateFunction"
    # A new layer version (new migration files) or new vector settings send an Update.
    assert ref(schema_props["SharedLayerVersion"]) == "SharedLayer"
    assert {"EmbeddingModel", "EmbeddingDimensions"} <= set(schema_props)
    assert 0 < int(schema_props["ServiceTimeout"]) <= 3600
    assert props("MigrateFunction")["CodeUri"] == "functions/migrate/"


# --- runtime, layers, observability -------------------------------------------------------------


def test_runtime_is_supported_until_after_2027() -> None:
    runtime = GLOBAL_FUNCTION["Runtime"]

    assert RUNTIME_DEPRECATION[runtime] >= dt.date(2028, 1, 1)
    assert all(
        r["Properties"]["CompatibleRuntimes"] == [runtime]
        for r in resources_of("AWS::Serverless::LayerVersion").values()
    )


def _requirements(path: str) -> set[str]:
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    return {re.split(r"[<>=\[ ]", line, maxsplit=1)[0] for line in lines if line and not line.startswith("#")}


def test_scikit_learn_ships_only_with_the_function_that_clusters() -> None:
    with_clustering = [f for f in FUNCTIONS if {"Ref": "ClusteringLayer"} in props(f).get("Layers", [])]
    shared_requirements = _requirements("layers/shared/requirements.txt")
    clustering_requirements = _requirements("layers/clustering/requirements.txt")

    assert with_clustering == ["ClusterFunction"]
    assert GLOBAL_FUNCTION["Layers"] == [{"Ref": "SharedLayer"}]
    assert not {"scikit-learn", "scipy"} & shared_requirements
    assert {"scikit-learn", "scipy"} <= clustering_requirements


def test_the_onnx_model_ships_only_with_the_embed_function_and_only_when_chosen() -> None:
    parameters = TEMPLATE_DATA["Parameters"]
    carriers = [f for f in FUNCTIONS if "ModelLayer" in json.dumps(props(f).get("Layers", []))]

    assert "onnx" in parameters["EmbeddingProvider"]["AllowedValues"]
    assert RESOURCES["ModelLayer"]["Condition"] == "UsesOnnx"
    assert carriers == ["EmbedFunction"]
    assert props("EmbedFunction")["Layers"] == [{"If": ["UsesOnnx", {"Ref": "ModelLayer"}, {"Ref": "AWS::NoValue"}]}]
    # The layer mounts the model at /opt/model; a deploy with another model or size is refused.
    assert GLOBAL_FUNCTION["Environment"]["Variables"]["AUTOTAG_ONNX_MODEL_DIR"] == "/opt/model"
    assert "OnnxIsMiniLM" in TEMPLATE_DATA["Rules"]


def test_the_embed_handler_imports_neither_scikit_learn_nor_scipy() -> None:
    """What makes the ClusteringLayer split work: the embed (and migrate, reprocess) path must not need it."""
    code = (
        "import runpy, sys\n"
        "runpy.run_path('functions/embed/app.py')\n"
        "runpy.run_path('functions/migrate/app.py')\n"
        "runpy.run_path('functions/reprocess/app.py')\n"
        "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))\n"
    )
    env = {
        "AUTOTAG_EMBEDDING_PROVIDER": "openai",
        "OPENAI_API_KEY": "unused",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"


def test_powertools_is_configured_for_every_function() -> None:
    env = GLOBAL_FUNCTION["Environment"]["Variables"]

    assert GLOBAL_FUNCTION["Tracing"] == "Active"
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"} <= set(env)
    # Each function writes to a log group with a retention, created before its first invocation.
    for function in FUNCTIONS:
        group = ref(props(function)["LoggingConfig"]["LogGroup"])
        assert "RetentionInDays" in props(group)


def test_checkov_skips_all_carry_a_reason() -> None:
    for name, resource in RESOURCES.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), name
            assert len(skip["comment"]) > 40, (name, skip["id"])


# --- samconfig, events, README ------------------------------------------------------------------


def _overrides(raw: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', raw))


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_samconfig_environments_set_only_real_parameters(environment: str) -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    deploy = config[environment]["deploy"]["parameters"]
    overrides = _overrides(deploy["parameter_overrides"])
    parameters = TEMPLATE_DATA["Parameters"]
    required = {name for name, p in parameters.items() if "Default" not in p}

    assert deploy["stack_name"] == f"autotag-{environment}"
    assert set(overrides) <= set(parameters)
    assert required <= set(overrides)
    for name, value in overrides.items():
        allowed = parameters[name].get("AllowedValues")
        assert allowed is None or value in [str(a) for a in allowed], (environment, name, value)


def test_prod_is_protected() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    overrides = _overrides(config["prod"]["deploy"]["parameters"]["parameter_overrides"])

    assert overrides["DatabaseDeletionProtection"] == "true"
    assert config["prod"]["deploy"]["parameters"]["confirm_changeset"] is True


def test_readme_documents_every_template_parameter() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    deploy = readme[readme.index("## Deploying") :]
    table_text = deploy[deploy.index("| parameter | default | meaning |") :].split("\n\n", 1)[0]
    table = set(re.findall(r"^\| `(\w+)` \|", table_text, flags=re.MULTILINE))

    assert table == set(TEMPLATE_DATA["Parameters"])


# Which test file exercises each sample event: every entry point and shape has a file, and every
# file is loaded by a test.
EVENT_USERS = {
    "eventbridge-object-created.json": "test_events.py",
    "eventbridge-object-deleted.json": "test_events.py",
    "sqs-eventbridge-batch.json": "test_events.py",
    "s3-object-created.json": "test_events.py",
    "s3-object-deleted.json": "test_events.py",
    "sqs-s3-object-created.json": "test_events.py",
    "cluster-request.json": "test_cluster_handler.py",
    "scheduled-event.json": "test_triggers.py",
    "cloudwatch-alarm-state-change.json": "test_triggers.py",
    "cloudformation-schema-create.json": "test_schema_resource.py",
    "reprocess-workspace.json": "test_reconcile.py",
}


def test_every_event_file_is_known_and_loaded_by_its_tests() -> None:
    files = {path.name for path in EVENTS.glob("*.json")}

    assert files == set(EVENT_USERS)
    for name, test_file in EVENT_USERS.items():
        assert name in (ROOT / "tests" / test_file).read_text(encoding="utf-8"), (name, test_file)
