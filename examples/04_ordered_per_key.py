"""Ordered events per key: each account's deposits are applied in the order posted.

Four producer threads post numbered deposits for eight accounts through a bus
with the ordered strategy. ``order_by="account"`` makes the account the
ordering key: events with the same key are handled one at a time, in the order
they were accepted, while different accounts are handled in parallel on the
workers. The ledger checks every deposit's number against the previous one.
(The concurrent strategy keeps the same per-key order for keyed events.)
"""

from __future__ import annotations

import threading

from eventbus import Event, EventBus, OrderedDelivery, subscribe

ACCOUNTS = [f"acct-{i}" for i in range(8)]
DEPOSITS = 500  # per account, numbered 1..500, each of `seq` coins


class Deposit(Event, topic="accounts.deposit", order_by="account"):
    account: str
    seq: int


class Ledger:
    def __init__(self) -> None:
        self.balance = dict.fromkeys(ACCOUNTS, 0)
        self.last_seq = dict.fromkeys(ACCOUNTS, 0)
        self.out_of_order: list[Deposit] = []

    @subscribe(thread_safe=True)  # may run in parallel, yet never for two deposits of one account
    def apply(self, event: Deposit) -> None:
        if event.seq != self.last_seq[event.account] + 1:
            self.out_of_order.append(event)
        self.last_seq[event.account] = event.seq
        self.balance[event.account] += event.seq


def produce(bus: EventBus, accounts: list[str]) -> None:
    for seq in range(1, DEPOSITS + 1):
        for account in accounts:
            bus.post(Deposit(account=account, seq=seq))


def main() -> None:
    ledger = Ledger()
    with EventBus(strategy=OrderedDelivery(workers=4)) as bus:
        bus.register(ledger)
        producers = [threading.Thread(target=produce, args=(bus, ACCOUNTS[i::4])) for i in range(4)]
        for thread in producers:
            thread.start()
        for thread in producers:
            thread.join()
    expected = DEPOSITS * (DEPOSITS + 1) // 2
    for account in ACCOUNTS:
        print(f"{account}: {ledger.last_seq[account]} deposits, balance {ledger.balance[account]:,}")
    print(f"posted {bus.stats().posted:,} deposits; out of order: {len(ledger.out_of_order)}")
    if not ledger.out_of_order and all(total == expected for total in ledger.balance.values()):
        print(f"OK: every account saw its deposits in post order and holds {expected:,}.")
    else:
        print("MISMATCH: a deposit was applied out of order or lost.")


if __name__ == "__main__":
    main()
