"""``python -m benchmark.cli`` (what MLproject's entry points call)."""

import sys

from . import main

sys.exit(main())
