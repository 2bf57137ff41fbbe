"""DetectHotSymbol: the symbol to move and its source, from the start input or an alarm event.

The work is hotshard.migration.steps.detect_hot_symbol; this is its Lambda entry point.
"""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from hotshard.migration.runtime import MigrationState, run

logger = Logger(service="migration-detect_hot_symbol")
tracer = Tracer(service="migration-detect_hot_symbol", patch_modules=("botocore",))  # X-Ray: ACTIVE


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
def handler(event: MigrationState, context: LambdaContext) -> dict[str, Any]:
    return run("DetectHotSymbol", event, logger)
