"""ReplayPendingOrders: the same Promote, waiting until the target is durable.

The work is hotshard.migration.steps.replay_pending_orders; this is its Lambda entry point.
"""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from hotshard.migration.runtime import MigrationState, run

logger = Logger(service="migration-replay_pending_orders")
tracer = Tracer(
    service="migration-replay_pending_orders", patch_modules=("botocore",)
)  # X-Ray: ACTIVE


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
def handler(event: MigrationState, context: LambdaContext) -> dict[str, Any]:
    return run("ReplayPendingOrders", event, logger)
