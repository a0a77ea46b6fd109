"""Backend URLs as they may be shown (the function lives in the core, which config uses)."""

from qtasks.core.urls import redact

__all__ = ["redact"]
