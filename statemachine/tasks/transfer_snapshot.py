"""TransferSnapshot: the source's snapshot followed by the target as a shadow.

The work is hotshard.migration.steps.transfer_snapshot; this is its Lambda entry point.
"""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from hotshard.migration.runtime import MigrationState, run

logger = Logger(service="migration-transfer_snapshot")
tracer = Tracer(service="migration-transfer_snapshot", patch_modules=("botocore",))  # X-Ray: ACTIVE


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
def handler(event: MigrationState, context: LambdaContext) -> dict[str, Any]:
    return run("TransferSnapshot", event, logger)
