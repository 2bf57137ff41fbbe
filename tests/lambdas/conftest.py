from tests.hotshard.conftest import _close_kafka_clients, broker, r, redis_server

__all__ = ["_close_kafka_clients", "broker", "r", "redis_server"]
