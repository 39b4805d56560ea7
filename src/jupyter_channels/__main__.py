"""``python -m jupyter_channels``: the ``jupyter channels`` command (``cli.py``)."""

import sys

from .cli import main

sys.exit(main())
