from __future__ import annotations

import sys

from searchd.cli.main import main

sys.exit(main())
