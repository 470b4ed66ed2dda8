"""``python -m amondask`` runs the ``amondask`` command."""

import sys

from amondask.cli import main

sys.exit(main())
