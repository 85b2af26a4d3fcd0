"""ReprocessFunction: schedule, DLQ alarm or manual request in; DLQs redriven, S3 and the database reconciled."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from autotag.handlers import handle_reprocess
from autotag.settings import get_settings

# The logger is named after the service, "autotag": the parent of every package logger, so
# domain log lines come out structured, with the Lambda context, too.
logger = Logger()
tracer = Tracer()
metrics = Metrics()
# Parse the settings during the cold start: a wrong or missing one fails the init phase with a
# message naming the variable, instead of failing every request later.
get_settings()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_reprocess(event, context, metrics)
