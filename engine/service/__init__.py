"""The engine service: the imperative shell around the books (Kafka, Redis, S3, gRPC).

core.py is the functional part (records in -> events and output records out, recovery
arithmetic); loop.py drives it; control.py serves gRPC; store.py keeps snapshots;
metrics.py counts; settings.py reads the configuration once.
"""
