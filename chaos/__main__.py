"""``python -m chaos [--short] [--only a,c]``: see chaos/run.py."""

import sys

from chaos.run import main

sys.exit(main())
