"""PauseRouting: stop-and-copy: route MIGRATING; the router buffers the symbol in pending-orders.

The work is hotshard.migration.steps.pause_routing; this is its Lambda entry point.
"""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from hotshard.migration.runtime import MigrationState, run

logger = Logger(service="migration-pause_routing")
tracer = Tracer(service="migration-pause_routing", patch_modules=("botocore",))  # X-Ray: ACTIVE


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
def handler(event: MigrationState, context: LambdaContext) -> dict[str, Any]:
    return run("PauseRouting", event, logger)
