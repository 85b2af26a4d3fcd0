"""MigrateFunction: the custom resource that applies schema migrations on every deploy."""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from autotag.schema_resource import handle_schema_resource
from autotag.settings import get_settings

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Settings are parsed per request, not at import: a bad setting must still be answered to
    # CloudFormation as FAILED instead of leaving the stack waiting.
    return handle_schema_resource(event, get_settings)
