"""Where the package's log lines go: into the log of the application hosting it.

Every module logs through ``logging.getLogger(__name__)``. Those loggers have no
handler of their own: :func:`attach_logs` makes the package's root logger a child
of the host's log, the way jupyter_server attaches Tornado's loggers to its own,
so the lines come out in the host's format and the host's log level applies.
"""

from __future__ import annotations

import logging

PACKAGE_LOGGER = "jupyter_channels"


def attach_logs(host: logging.Logger) -> logging.Logger:
    """Send every ``jupyter_channels.*`` log line through ``host``'s handlers.

    Call it once the host's log is configured (the server extension does, with the
    Jupyter server's log). Returns the package's logger.
    """
    logger = logging.getLogger(PACKAGE_LOGGER)
    logger.parent = host
    logger.propagate = True
    # NOTSET: the effective level is the host's, even when the host's level changes later.
    # setLevel also clears the loggers' cached levels, which the new parent invalidates.
    logger.setLevel(logging.NOTSET)
    return logger
