"""The engine service: the imperative shell around the books (Kafka, Redis, S3, gRPC).

The functional part, no I/O: core.py (records in -> events and output records out,
recovery arithmetic) and handover.py (what Snapshot, Restore and Remove may do). The shell:
loop.py (the Kafka loop), operations.py (the control operations, run on the loop thread),
control.py (gRPC), store.py (snapshot bytes in Redis or S3), metrics.py, settings.py (the
configuration, read once). errors.py: the typed errors, with reason codes.
"""
