"""ProvisionNewInstance: a target engine from the warm pool (or the one asked for), its q.

The work is hotshard.migration.steps.provision_new_instance; this is its Lambda entry point.
"""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from hotshard.migration.runtime import MigrationState, run

logger = Logger(service="migration-provision_new_instance")
tracer = Tracer(
    service="migration-provision_new_instance", patch_modules=("botocore",)
)  # X-Ray: ACTIVE


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context
def handler(event: MigrationState, context: LambdaContext) -> dict[str, Any]:
    return run("ProvisionNewInstance", event, logger)
