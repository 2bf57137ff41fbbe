from tests.hotshard.conftest import broker, r, redis_server

__all__ = ["broker", "r", "redis_server"]
