"""``python -m wshub``: the same as the ``wshub`` command."""

from __future__ import annotations

import sys

from wshub.cli import main

sys.exit(main())
