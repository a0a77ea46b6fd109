"""The Redis backend (``pip install 'qtasks[redis]'``): see ``backend`` and docs/design/redis.md."""

from qtasks.backends.redis.backend import RedisBackend

__all__ = ["RedisBackend"]
