"""QTasks' ``Logger``: a named logger with a sub-name, over the standard ``logging`` module.

``Logger(name, subname=None, default_level=INFO, format=None)`` logs to
``logging.getLogger(name)``; each record carries ``subname`` (``%(subname)s`` in a format).
The logger gets a stream handler with ``format`` only when neither it nor the root logger
has handlers, so an application's own logging setup is left alone (QTasks always added one).
``QueueTasks(log=Logger(...))`` makes it the app's logger.
"""

from __future__ import annotations

import logging
from typing import Any

DEFAULT_FORMAT = "%(asctime)s [%(name)s: %(levelname)s] (%(subname)s) %(message)s"


class Logger:
    def __init__(self, name: str, subname: str | None = None,
                 default_level: int = logging.INFO, format: str | None = None) -> None:
        self.name, self.subname = name, subname
        self.default_level, self.format = default_level, format
        self.logger = logging.getLogger(name)
        self.logger.setLevel(default_level)
        if not self.logger.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter(format or DEFAULT_FORMAT))
            self.logger.addHandler(handler)

    def _log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        extra = {"subname": self.subname or self.name, **kwargs.pop("extra", {})}
        kwargs.setdefault("stacklevel", 3)  # the caller's line, not this wrapper's
        self.logger.log(level, msg, *args, extra=extra, **kwargs)

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._log(logging.DEBUG, msg, *args, **kwargs)

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._log(logging.INFO, msg, *args, **kwargs)

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._log(logging.WARNING, msg, *args, **kwargs)

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._log(logging.ERROR, msg, *args, **kwargs)

    def critical(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._log(logging.CRITICAL, msg, *args, **kwargs)

    def exception(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exc_info", True)
        self._log(logging.ERROR, msg, *args, **kwargs)

    def isEnabledFor(self, level: int) -> bool:
        return self.logger.isEnabledFor(level)

    def setLevel(self, level: int | str) -> None:
        self.logger.setLevel(level)

    def with_subname(self, new_subname: str, default_level: int | None = None,
                     format: str | None = None) -> Logger:
        """The same logger under another sub-name."""
        return Logger(self.name, new_subname, default_level or self.logger.level or
                      self.default_level, format or self.format)

    def update_logger(self, **kwargs: Any) -> Logger:
        """A logger with some of ``name``, ``subname``, ``default_level``, ``format`` changed."""
        settings = {"name": self.name, "subname": self.subname,
                    "default_level": self.default_level, "format": self.format, **kwargs}
        return Logger(**settings)

    def __repr__(self) -> str:
        return f"<Logger {self.name!r} subname={self.subname!r}>"


__all__ = ["Logger"]
