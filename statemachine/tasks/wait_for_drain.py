"""WaitForDrain: stop-and-copy: Fence on the source at its current offset.

The work is hotshard.migration.steps.wait_for_drain; this is its Lambda entry point.
"""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from hotshard.migration.runtime import MigrationState, run

logger = Logger(service="migration-wait_for_drain")
tracer = Tracer(service="migration-wait_for_drain", patch_modules=("botocore",))  # X-Ray: ACTIVE


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
def handler(event: MigrationState, context: LambdaContext) -> dict[str, Any]:
    return run("WaitForDrain", event, logger)
