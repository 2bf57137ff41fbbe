"""SwitchRouting: route to the target, fence (pre-copy) or end the pending buffer, Promote.

The work is hotshard.migration.steps.switch_routing; this is its Lambda entry point.
"""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from hotshard.migration.runtime import MigrationState, run

logger = Logger(service="migration-switch_routing")
tracer = Tracer(service="migration-switch_routing", patch_modules=("botocore",))  # X-Ray: ACTIVE


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
def handler(event: MigrationState, context: LambdaContext) -> dict[str, Any]:
    return run("SwitchRouting", event, logger)
