"""``python -m searchd.worker``: the worker process the supervisor starts for one job."""

from __future__ import annotations

import contextlib
import sys

from searchd.worker.main import main

with contextlib.suppress(KeyboardInterrupt):
    sys.exit(main())
