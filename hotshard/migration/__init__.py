"""The migration's shared package: what the Step Functions task Lambdas
(statemachine/tasks/, one thin handler per Task state) and the local control plane
(hotshard.local.control) run. docs/ARCHITECTURE.md "Moving a hot symbol" and HANDOVER.

- `errors`: the typed errors whose class names are the ASL's Retry/Catch error names;
- `plan`: pure decisions (the input, the hottest symbol, catch-up, rollback, the summary);
- `engines`: the one gRPC EngineControl client;
- `fleet`: where a target engine comes from (Fleet; AWS Auto Scaling with a warm pool);
- `markers`: pending-orders end offsets and PENDING_END markers;
- `steps`: each task's work over those, a function of (context, state) -> result.
"""
