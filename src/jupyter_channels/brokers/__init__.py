"""Brokers: how messages reach every server's subscribers. One file each.

``local`` (the default) fans out in this process over the embedded SQLite
history. A broker is chosen by ``c.ChannelsApp.broker_url``; optional brokers
are imported only when selected.
"""

from __future__ import annotations

from urllib.parse import urlparse

from .base import Broker

#: URL schemes a broker can be selected by, and what selects the local broker.
KNOWN_SCHEMES: dict[str, str] = {}


def check_broker_url(url: str) -> None:
    """Raise ``ValueError`` with a clear message if no broker serves ``url``."""
    if not url:
        return
    scheme = urlparse(url).scheme
    if scheme not in KNOWN_SCHEMES:
        supported = ", ".join(f"{s}://" for s in KNOWN_SCHEMES) or "none yet"
        raise ValueError(
            f"ChannelsApp.broker_url {url!r}: unknown scheme {scheme!r}. "
            f"Leave broker_url empty for the embedded broker; supported schemes: {supported}."
        )


__all__ = ["KNOWN_SCHEMES", "Broker", "check_broker_url"]
