"""Generated protobuf and gRPC code (from proto/hotshard/v1 by `make proto`)."""
