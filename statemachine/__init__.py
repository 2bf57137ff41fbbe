"""The migration state machine: the ASL (migration.asl.json) and its task Lambdas (tasks/)."""
