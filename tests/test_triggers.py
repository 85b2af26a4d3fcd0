"""The events that start a reprocessing pass, from events/ (the files `sam local invoke -e` uses)."""

from __future__ import annotations

from typing import Any

import pytest

from autotag.events import EventParseError
from autotag.triggers import TriggerKind, parse_trigger
from tests.conftest import load_event


def test_scheduled_event() -> None:
    trigger = parse_trigger(load_event("scheduled-event.json"))

    assert trigger.kind is TriggerKind.SCHEDULE
    assert trigger.workspace is None and trigger.actionable


def test_dlq_alarm_going_into_alarm() -> None:
    trigger = parse_trigger(load_event("cloudwatch-alarm-state-change.json"))

    assert trigger.kind is TriggerKind.ALARM
    assert trigger.alarm_name == "autotag-dev-IngestDLQAlarm-1A2B3C4D5E6F"
    assert trigger.actionable


def test_alarm_going_back_to_ok_is_not_actionable() -> None:
    event = load_event("cloudwatch-alarm-state-change.json")
    event["detail"]["state"]["value"] = "OK"

    assert not parse_trigger(event).actionable


@pytest.mark.parametrize(("event", "workspace"), [({}, None), ({"workspace": "demo"}, "demo")])
def test_manual_request(event: dict[str, Any], workspace: str | None) -> None:
    trigger = parse_trigger(event)

    assert trigger.kind is TriggerKind.MANUAL
    assert trigger.workspace == workspace


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"workspace": ""}, "workspace must be"),
        ({"workspace": "a/b"}, "workspace must be"),
        ({"workspace": "demo", "force": True}, "unexpected fields"),
        ({"detail-type": "Object Created", "source": "aws.s3", "detail": {}}, "not a reprocessing trigger"),
        ({"detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch", "detail": {}}, "alarmName"),
    ],
)
def test_malformed_triggers_are_rejected(event: dict[str, Any], message: str) -> None:
    with pytest.raises(EventParseError, match=message):
        parse_trigger(event)
