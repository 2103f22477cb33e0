"""``python -m eventbus``: the same command line as the ``eventbus`` console script."""

from ._cli import main

raise SystemExit(main())
