"""The hub: routes client frames to channels, tracks subscriptions and presence, fans out."""

from __future__ import annotations

from .base import SERVER_SENDER_JSON, HookError, Limits
from .core import Hub
from .messages import Published

__all__ = ["SERVER_SENDER_JSON", "HookError", "Hub", "Limits", "Published"]
