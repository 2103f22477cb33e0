"""Delivery strategies: on which thread, and in which order, handlers run.

Imported by the bus (and re-exported by the public package) only: nothing below
the bus knows which strategy runs.

- `protocol`: `DeliveryStrategy`, the contract, and `is_strategy`;
- `sync`: `SyncDelivery`, on the posting thread;
- `threaded`: `ConcurrentDelivery` and `OrderedDelivery`, on a pool of threads
  (with `_pool_queues`, its run queue and lines, and `_pool_exit`, the drain at
  interpreter exit);
- `asyncio`: `AsyncioDelivery`, on an event loop (in three parts over
  `_asyncio_state`: intake and waiting here, `_asyncio_lanes`, `_asyncio_recovery`);
- `backpressure`: waiting for room, shared by the pools and the asyncio strategy.
"""

from .asyncio import AsyncioDelivery
from .protocol import DeliveryStrategy, is_strategy
from .sync import SyncDelivery
from .threaded import ConcurrentDelivery, OrderedDelivery

__all__ = [
    "AsyncioDelivery",
    "ConcurrentDelivery",
    "DeliveryStrategy",
    "OrderedDelivery",
    "SyncDelivery",
    "is_strategy",
]
