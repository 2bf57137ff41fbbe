"""Rollback: route back, Unfence on the source, drop the shadow, return the target.

The work is hotshard.migration.steps.rollback; this is its Lambda entry point.
"""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from hotshard.migration.runtime import MigrationState, run

logger = Logger(service="migration-rollback")
tracer = Tracer(service="migration-rollback", patch_modules=("botocore",))  # X-Ray: ACTIVE


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
def handler(event: MigrationState, context: LambdaContext) -> dict[str, Any]:
    return run("Rollback", event, logger)
