"""What asked for a reprocessing pass: the schedule, a DLQ alarm going into ALARM, or a person.

The three arrive as different events (an EventBridge `Scheduled Event`, an EventBridge
`CloudWatch Alarm State Change`, and a plain `{"workspace": ...}` from `sam remote invoke` or
`autotag reprocess`); the reprocessor only needs to know which, and for whom.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent

from autotag.events import EventParseError


class TriggerKind(StrEnum):
    SCHEDULE = "schedule"
    ALARM = "alarm"
    MANUAL = "manual"


@dataclass(frozen=True)
class Trigger:
    kind: TriggerKind
    workspace: str | None = None  # None: every workspace
    alarm_name: str | None = None
    # False for an alarm going back to OK: nothing to repair, the event is acknowledged only.
    actionable: bool = True


def parse_trigger(event: dict[str, Any]) -> Trigger:
    if "detail-type" not in event:
        return _manual(event)
    bridge = EventBridgeEvent(event)
    if bridge.detail_type == "Scheduled Event" and bridge.source == "aws.events":
        return Trigger(TriggerKind.SCHEDULE)
    if bridge.detail_type == "CloudWatch Alarm State Change" and bridge.source == "aws.cloudwatch":
        detail = bridge.detail
        try:
            name = str(detail["alarmName"])
            state = str(detail["state"]["value"])
        except (KeyError, TypeError):
            raise EventParseError("alarm state change without alarmName or state.value") from None
        return Trigger(TriggerKind.ALARM, alarm_name=name, actionable=state == "ALARM")
    raise EventParseError(f"not a reprocessing trigger: {bridge.source} {bridge.detail_type!r}")


def _manual(event: dict[str, Any]) -> Trigger:
    unknown = set(event) - {"workspace"}
    if unknown:
        raise EventParseError(f"unexpected fields in a manual reprocess request: {sorted(unknown)}")
    workspace = event.get("workspace")
    if workspace is not None and (not isinstance(workspace, str) or not workspace or "/" in workspace):
        raise EventParseError(f"workspace must be a non-empty name without '/', got {workspace!r}")
    return Trigger(TriggerKind.MANUAL, workspace=workspace)
