"""``python -m vestnik ...`` is the ``vestnik`` console script."""

import sys

from vestnik.cli import main

sys.exit(main())
