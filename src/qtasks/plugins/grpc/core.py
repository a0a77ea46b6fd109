"""QTasks import path ``qtasks.plugins.grpc.core``: its generated gRPC modules, which qtasks
does not have. Reading any name of them raises ``NotYetSupported``."""

from typing import Any, NoReturn

from qtasks.exceptions import NotYetSupported
from qtasks.plugins.grpc import _INSTEAD


class _NoGrpcModule:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> NoReturn:
        raise NotYetSupported(f"qtasks.plugins.grpc.core.{self._name}.{attr}: {_INSTEAD} "
                              "(see docs/migration.md)")

    def __repr__(self) -> str:
        return f"<qtasks.plugins.grpc.core.{self._name}: not in qtasks>"


qtasks_pb2: Any = _NoGrpcModule("qtasks_pb2")
qtasks_pb2_grpc: Any = _NoGrpcModule("qtasks_pb2_grpc")

__all__ = ["qtasks_pb2", "qtasks_pb2_grpc"]
