"""The local driver takes its rules from template.yaml; these are the rules DESIGN.md requires."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotag.local.template_rules import TemplateError, load_rules
from tests.conftest import TEMPLATE


def test_embed_side_rules() -> None:
    rules = load_rules(TEMPLATE).ingest

    assert rules.concurrency == 5  # reserved concurrency and the event source's maximum
    assert rules.max_receive_count == 3  # one try and two retries, then the DLQ
    assert rules.batch_size == 25  # one embedding request per 25 documents in a burst
    assert rules.visibility_timeout >= 6 * rules.function_timeout


def test_cluster_side_rules() -> None:
    rules = load_rules(TEMPLATE).cluster

    assert rules.concurrency == 2  # reserved = event source maximum; a lock serialises each workspace
    assert rules.max_receive_count == 3
    assert rules.visibility_timeout >= 6 * rules.function_timeout


def test_rule_delivers_created_and_deleted_objects_of_the_bucket() -> None:
    pattern = load_rules(TEMPLATE).event_pattern

    assert pattern["source"] == ["aws.s3"]
    assert sorted(pattern["detail-type"]) == ["Object Created", "Object Deleted"]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "DocumentsBucket"}]


def test_template_without_the_functions_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "template.yaml"
    broken.write_text("Resources:\n  IngestQueue:\n    Type: AWS::SQS::Queue\n", encoding="utf-8")

    with pytest.raises(TemplateError, match="cannot read the deployment rules"):
        load_rules(broken)
