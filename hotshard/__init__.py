"""hotshard: the package shared by the engine, the Lambdas and the state machine tasks."""
