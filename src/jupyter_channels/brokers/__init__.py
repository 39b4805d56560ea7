"""Brokers: how messages reach every server's subscribers. One file each.

``local`` (the default) fans out in this process over the embedded SQLite
history. ``redis`` shares topics, offsets, history and presence between
servers through Redis. A broker is chosen by ``c.ChannelsApp.broker_url``;
optional brokers are imported only when selected.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from .base import Broker

#: URL schemes a broker can be selected by: the broker's ``module:Class`` and the extra
#: that installs what it needs. An empty ``broker_url`` selects the local broker.
KNOWN_SCHEMES: dict[str, tuple[str, str]] = {
    "redis": ("jupyter_channels.brokers.redis:RedisBroker", "redis"),
    "rediss": ("jupyter_channels.brokers.redis:RedisBroker", "redis"),
}


def _load(scheme: str, url: str) -> Callable[..., Broker]:
    spec, extra = KNOWN_SCHEMES[scheme]
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(
            f"ChannelsApp.broker_url {url!r} needs a package that is not installed "
            f"({e.name}): pip install 'jupyter-channels[{extra}]'"
        ) from None
    factory: Callable[..., Broker] = getattr(module, class_name)
    return factory


def check_broker_url(url: str) -> None:
    """Raise ``ValueError`` with a clear message if no broker serves ``url``
    (an unknown scheme, or a broker whose extra is not installed)."""
    if not url:
        return
    scheme = urlparse(url).scheme
    if scheme not in KNOWN_SCHEMES:
        supported = ", ".join(f"{s}://" for s in KNOWN_SCHEMES) or "none yet"
        raise ValueError(
            f"ChannelsApp.broker_url {url!r}: unknown scheme {scheme!r}. "
            f"Leave broker_url empty for the embedded broker; supported schemes: {supported}."
        )
    _load(scheme, url)


def broker_for_url(url: str, **options: Any) -> Broker:
    """The broker ``url`` selects (not the local one: that needs no URL), made with
    ``options`` (``history_size``, ``presence_ttl``)."""
    return _load(urlparse(url).scheme, url)(url, **options)


__all__ = ["KNOWN_SCHEMES", "Broker", "broker_for_url", "check_broker_url"]
