"""The default bus versus injected buses.

Shows the process-wide default bus behind the module-level ``eventbus.register``
and ``eventbus.post`` (created on first use and looked up at every call); a bus
made with ``EventBus(...)`` and handed to the code that uses it, which never
touches the default; and ``set_default_bus`` / ``reset_default_bus``, which
configure or replace the default for an application or a test.
"""

from __future__ import annotations

import eventbus
from eventbus import Event, EventBus, subscribe


class Greeting(Event, topic="greetings"):
    text: str


class Inbox:
    def __init__(self) -> None:
        self.received: list[str] = []

    @subscribe
    def receive(self, event: Greeting) -> None:
        self.received.append(event.text)


class Greeter:
    """Takes its bus as an argument: no hidden global, easy to test."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    def greet(self, name: str) -> None:
        self.bus.post(Greeting(text=f"hello, {name}"))


def main() -> None:
    default_inbox, injected_inbox = Inbox(), Inbox()
    eventbus.register(default_inbox)  # creates the default bus on first use
    eventbus.post(Greeting(text="hello via the default bus"))
    with EventBus(strategy="sync", name="injected") as bus:
        bus.register(injected_inbox)
        Greeter(bus).greet("injected bus")
    eventbus.get_default_bus().join()
    print("default bus:", eventbus.get_default_bus(), "->", default_inbox.received)
    print("injected bus:", bus, "->", injected_inbox.received)

    previous = eventbus.set_default_bus(EventBus(strategy="sync", name="configured"))
    assert previous is not None
    previous.shutdown()  # set_default_bus() hands the old bus back; shutting it down is up to you
    eventbus.post(Greeting(text="posted after set_default_bus"))  # looked up now: the new default
    dead = eventbus.get_default_bus().stats().dead  # the Inbox is registered on the old bus only
    print("new default bus:", eventbus.get_default_bus(), "-> events that reached no handler:", dead)
    eventbus.reset_default_bus()  # shut down and forgotten; the next use creates a fresh one
    print("after reset_default_bus:", eventbus.get_default_bus())
    eventbus.reset_default_bus()


if __name__ == "__main__":
    main()
