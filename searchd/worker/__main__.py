"""``python -m searchd.worker``: the worker process the supervisor starts for one job."""

from __future__ import annotations

import contextlib
import signal
import sys

# A stop can come while the imports below are still running (scikit-learn and pandas take
# a second or more on a busy machine): until main() installs its handler, this one only
# notes it, and main() then stops at once instead of dying by the signal.
_early_stop: list[int] = []
signal.signal(signal.SIGTERM, lambda signum, frame: _early_stop.append(signum))

from searchd.worker.main import main  # noqa: E402

with contextlib.suppress(KeyboardInterrupt):
    sys.exit(main(stopped_early=lambda: bool(_early_stop)))
