"""``python -m medswarm``: the same as the ``medswarm`` command."""

import sys

from medswarm.cli import main

sys.exit(main())
