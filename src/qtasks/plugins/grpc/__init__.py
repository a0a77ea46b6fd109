"""QTasks' gRPC plugin has no qtasks equivalent (replaced, see docs/migration.md)."""

from qtasks.compat import unavailable

_INSTEAD = ("qtasks serves no gRPC API; enqueue from other services through the backend "
            "(a qtasks app with the same broker_url), or use the dashboard's HTTP pages")
AsyncgRPCPlugin = unavailable("qtasks.plugins.grpc.AsyncgRPCPlugin", _INSTEAD)
SyncgRPCPlugin = unavailable("qtasks.plugins.grpc.SyncgRPCPlugin", _INSTEAD)

__all__ = ["AsyncgRPCPlugin", "SyncgRPCPlugin"]
