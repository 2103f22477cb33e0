"""The ``eventbus`` command line (also ``python -m eventbus``).

::

    eventbus describe myapp.events:bus            # the bus's topology as a table
    eventbus describe myapp.events:bus --json     # ... as JSON
    eventbus describe myapp.events:bus --mermaid  # ... as a Mermaid flowchart
    eventbus dead-letters list redis://localhost:6379/0 --namespace shop
    eventbus dead-letters replay redis://localhost:6379/0 --namespace shop ID [ID ...]
    eventbus dead-letters drop redis://localhost:6379/0 --namespace shop ID [ID ...]

``MODULE:ATTRIBUTE`` names an `EventBus` (or a function without arguments that
returns one) the way ``uvicorn`` and ``gunicorn`` name an application; the current
directory is on the import path. Mistakes exit with status 2 and a message that
says what to do. Built on argparse: no dependency. Added in version 0.2.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from ._bus import EventBus
from ._events import Message

if TYPE_CHECKING:
    from ._bridge import Bridge
    from ._engine import DeadLetter, Engine

__all__ = ["main"]

_USAGE_ERROR = 2


class UsageError(Exception):
    """Raised for a mistake on the command line; the message says what to do."""


def _fail(message: str) -> NoReturn:
    raise UsageError(message)


# -- describe ---------------------------------------------------------------------------------


def load_bus(target: str) -> EventBus:
    """Import ``MODULE:ATTRIBUTE`` and return the bus it names (calling a factory if needed)."""
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        _fail(
            f"{target!r} is not MODULE:ATTRIBUTE.\n"
            "Name the module and the bus in it, for example: eventbus describe myapp.events:bus"
        )
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the current directory's modules
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            _fail(
                f"cannot import module {module_name!r}: {exc}.\n"
                "Run the command from the directory that contains it, or put that directory on PYTHONPATH."
            )
        _fail(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}\n"
            f"Fix the module; python -c 'import {module_name}' shows the traceback."
        )
    except Exception as exc:
        _fail(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}\n"
            f"Fix the module; python -c 'import {module_name}' shows the traceback."
        )
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            _fail(
                f"module {module_name!r} has no attribute {attribute!r}.\n"
                f"Name the variable that holds the bus, for example: eventbus describe {module_name}:bus"
            )
    if not isinstance(found, EventBus) and callable(found) and not isinstance(found, type):
        try:
            found = found()
        except Exception as exc:
            _fail(f"calling {target} to make the bus failed: {type(exc).__name__}: {exc}")
    if not isinstance(found, EventBus):
        _fail(
            f"{target} is {type(found).__qualname__} {found!r:.80}, not an EventBus.\n"
            "Name an EventBus instance, or a function without arguments that returns one."
        )
    return found


def _describe(args: argparse.Namespace) -> str:
    topology = load_bus(args.target).describe()
    if args.json:
        return json.dumps(topology.to_dict(), indent=2)
    if args.mermaid:
        return topology.to_mermaid()
    return str(topology)


# -- dead letters -----------------------------------------------------------------------------


def engine_for(url: str) -> Engine:
    """The bridge engine for *url*: Redis Streams for ``redis://``, NATS JetStream for ``nats://``."""
    from . import bridges

    scheme = url.partition("://")[0].lower()
    try:
        if scheme in ("redis", "rediss", "unix"):
            engine: Engine = bridges.RedisStreams(url)
            return engine
        if scheme in ("nats", "tls"):
            engine = bridges.NatsJetStream(url)
            return engine
    except (ImportError, AttributeError) as exc:
        _fail(f"the {scheme}:// engine is not available: {exc}")
    _fail(f"no engine for {url.partition('://')[0]!r} URLs; give a redis://, rediss://, unix:// or nats:// URL")


def _dead_bridge(args: argparse.Namespace) -> tuple[EventBus, Bridge]:
    """A send-only bridge on a private sync bus: the engine-independent way to its dead letters."""
    engine = engine_for(args.url)
    # The command reports failures itself, once: no outage warnings from the bridge's retries.
    for name in ("eventbus", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    bus = EventBus(strategy="sync", name="eventbus-cli")
    try:
        bridge = bus.bridge(engine, events=[Message], namespace=args.namespace, partitions=args.partitions)
    except BaseException:
        bus.shutdown()
        raise
    return bus, bridge


def _letter_dict(letter: DeadLetter) -> dict[str, Any]:
    try:
        envelope = json.loads(letter.payload)
    except ValueError:
        envelope = None
    return {
        "id": letter.id,
        "type": envelope.get("type") if isinstance(envelope, dict) else None,
        "event_id": envelope.get("id") if isinstance(envelope, dict) else None,
        "reason": letter.reason,
        "error": letter.error,
        "handler": letter.handler,
        "attempts": letter.attempts,
        "group": letter.group,
        "partition": letter.partition,
        "message_id": letter.message_id,
        "payload": letter.payload.decode("utf-8", "replace"),
    }


def _list(args: argparse.Namespace) -> str:
    bus, bridge = _dead_bridge(args)
    try:
        letters = [_letter_dict(letter) for letter in bridge.dead_letters(args.limit, timeout=args.timeout)]
    finally:
        bus.shutdown(timeout=args.timeout)
    if args.json:
        return json.dumps(letters, indent=2)
    if not letters:
        return f"no dead letters in namespace {args.namespace!r}"
    lines = []
    for letter in letters:
        lines.append(f"{letter['id']}  {letter['type']}  attempts={letter['attempts']}  {letter['reason']}")
        if letter["handler"]:
            lines.append(f"    handler {letter['handler']} (group {letter['group']}): {letter['error']}")
    return "\n".join(lines)


def _replay(args: argparse.Namespace) -> str:
    bus, bridge = _dead_bridge(args)
    try:
        done = bridge.replay(args.ids, timeout=args.timeout)
    finally:
        bus.shutdown(timeout=args.timeout)
    return f"replayed {done} of {len(args.ids)} dead letter(s)"


def _drop(args: argparse.Namespace) -> str:
    engine = engine_for(args.url)
    drop: Callable[[str, list[str]], Any] | None = getattr(engine, "drop_dead_letters", None)
    if drop is not None:  # an engine that knows how (the protocol has no drop yet)
        done = int(asyncio.run(drop(args.namespace, args.ids)))
    elif type(engine).__name__ == "RedisStreams":
        done = asyncio.run(_redis_drop(engine, args.namespace, args.ids))
    elif type(engine).__name__ == "NatsJetStream":
        done = asyncio.run(_nats_drop(engine, args.namespace, args.ids))
    else:
        _fail(f"dropping dead letters is not supported for {engine.describe()} yet")
    return f"dropped {done} of {len(args.ids)} dead letter(s)"


async def _redis_drop(engine: Any, namespace: str, ids: list[str]) -> int:
    # The dead letters of a namespace are the stream "{namespace}:dead" (see eventbus/bridges/_redis.py).
    client = engine.client()
    try:
        return int(await client.xdel(f"{namespace}:dead", *ids))
    finally:
        await client.aclose()


async def _nats_drop(engine: Any, namespace: str, ids: list[str]) -> int:
    # The dead letters of a namespace are the stream "eventbus-{namespace}-dead", by sequence
    # number (see eventbus/bridges/_nats.py).
    from nats.js.errors import NotFoundError

    from .bridges._nats import stream_names

    dead_stream = stream_names(namespace)[1]
    connection = await engine.connect()
    try:
        js = connection.jetstream()
        done = 0
        for dead_id in ids:
            try:
                done += bool(await js.delete_msg(dead_stream, int(dead_id)))
            except (NotFoundError, ValueError):
                continue
        return done
    finally:
        await connection.close()


# -- the parser ---------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``eventbus`` command."""
    top = argparse.ArgumentParser(prog="eventbus", description="Look at event buses and their bridges.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    describe = commands.add_parser(
        "describe",
        help="print a bus's topology (events, handlers in call order, strategy, bridges)",
        description="Import MODULE and print the topology of the EventBus at ATTRIBUTE.",
    )
    describe.add_argument("target", metavar="MODULE:ATTRIBUTE", help="for example myapp.events:bus")
    form = describe.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print JSON")
    form.add_argument("--mermaid", action="store_true", help="print a Mermaid flowchart")
    describe.set_defaults(run=_describe)

    dead = commands.add_parser("dead-letters", help="list, replay or drop a bridge's dead letters")
    actions = dead.add_subparsers(dest="action", required=True, metavar="ACTION")

    def engine_arguments(command: argparse.ArgumentParser) -> None:
        command.add_argument("url", help="the engine: redis://host:port/db or nats://host:port")
        command.add_argument("--namespace", default="eventbus", help="the bridges' namespace (default: eventbus)")
        command.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the engine")
        command.add_argument(
            "--partitions", type=int, default=8, help="the namespace's partitions, as its bridges use (default 8)"
        )

    listing = actions.add_parser("list", help="list the oldest dead letters")
    engine_arguments(listing)
    listing.add_argument("--limit", type=int, default=100, help="how many (default 100)")
    listing.add_argument("--json", action="store_true", help="print JSON, payloads included")
    listing.set_defaults(run=_list)

    replay = actions.add_parser("replay", help="send dead letters again (to every group) and remove them")
    engine_arguments(replay)
    replay.add_argument("ids", nargs="+", metavar="ID", help="dead-letter ids, as `list` shows them")
    replay.set_defaults(run=_replay)

    drop = actions.add_parser("drop", help="delete dead letters for good")
    engine_arguments(drop)
    drop.add_argument("ids", nargs="+", metavar="ID", help="dead-letter ids, as `list` shows them")
    drop.set_defaults(run=_drop)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit status."""
    args = parser().parse_args(argv)
    try:
        output = args.run(args)
    except UsageError as exc:
        print(f"eventbus: error: {exc}", file=sys.stderr)
        return _USAGE_ERROR
    except TimeoutError:
        print(
            f"eventbus: error: the engine at {engine_for(args.url).describe()} did not answer "
            f"within {args.timeout} s.\n"
            "Check that it runs and that the URL is right, or give a longer --timeout.",
            file=sys.stderr,
        )
        return 1
    except Exception as exc:  # the engine refused, a timeout: say what happened, without a traceback
        print(f"eventbus: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(output)
    return 0
