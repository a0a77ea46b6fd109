"""QTasks import path ``qtasks.plugins.grpc.core``: its generated gRPC modules, which qtasks
does not have. Reading any name of them raises ``NotYetSupported``."""

from typing import Any

from qtasks.compat import missing
from qtasks.plugins.grpc import _INSTEAD

qtasks_pb2: Any = missing("qtasks.plugins.grpc.core.qtasks_pb2", _INSTEAD)
qtasks_pb2_grpc: Any = missing("qtasks.plugins.grpc.core.qtasks_pb2_grpc", _INSTEAD)

__all__ = ["qtasks_pb2", "qtasks_pb2_grpc"]
