"""The asyncio benchmark of issue 6: events to one async handler, beside floors and peers.

It is workload 8 of the main harness (the cases live in ``benchmarks/peers.py``):
100,000 events to one ``async def`` handler on the asyncio strategy, posted with
``post`` and with ``await apost``, next to ``loop.call_soon`` and
``loop.create_task`` floors, blinker's ``send_async``, pyee's
``AsyncIOEventEmitter``, psygnal's async slots and abxbus, in one run::

    python -m benchmarks.bench_asyncio [--rounds R] [--quick]

The targets (at least blinker's ``send_async``, at least 0.5x ``call_soon``) are
printed under the table.
"""

from __future__ import annotations

import sys

from benchmarks.run import main

if __name__ == "__main__":
    sys.exit(main(["--only", "asyncio", *sys.argv[1:]]))
