"""``python -m bench``: the issue-6 suite, bench.run (bench.overhead, bench.idle stay apart)."""

from __future__ import annotations

import sys

from bench.run import main

sys.exit(main())
