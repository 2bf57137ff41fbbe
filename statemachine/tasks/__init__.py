"""The migration's task Lambdas: one module per Task state of statemachine/migration.asl.json
(`WaitForDrain` -> wait_for_drain.py), each a thin Powertools handler over hotshard.migration."""
