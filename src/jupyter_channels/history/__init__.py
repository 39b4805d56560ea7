"""History stores: where a topic's messages and offsets live."""

from .base import Draft, HistoryStore, Page, Retained, StoredMessage, StoreUnavailable
from .sqlite import SqliteHistory

__all__ = [
    "Draft",
    "HistoryStore",
    "Page",
    "Retained",
    "SqliteHistory",
    "StoreUnavailable",
    "StoredMessage",
]
