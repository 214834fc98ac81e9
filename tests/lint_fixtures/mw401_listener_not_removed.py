"""MW401 listener-not-removed: positive cases carry `# expect: MW401`."""

import signal
import sqlite3
from functools import partial


def on_tick(event):
    return event


class Widget:
    def __init__(self, bus, button, future, emitter, loop):
        bus.subscribe("tick", self.on_tick)  # expect: MW401
        button.addEventListener("click", lambda e: e)  # expect: MW401
        future.add_done_callback(self._done)  # one-shot: a future calls it once and drops it
        loop.call_soon(self._done)  # one-shot scheduling
        self.loop.add_callback(self._done)  # tornado's one-shot add_callback
        emitter.on("data", partial(self.handle, 1))  # expect: MW401
        emitter.add_listener("x", on_tick)  # expect: MW401
        self.sock = None

    def on_tick(self, event):
        return event

    def _done(self, fut):
        return fut

    def handle(self, n, data):
        return n, data


def wire_all(items, bus):
    for item in items:
        bus.connect(item.on_change)  # expect: MW401
    return [bus.register(x.callback) for x in items]  # expect: MW401


async def async_loop(bus, items):
    async for item in items:
        bus.addHandler(item.handler)  # expect: MW401


def once(bus):
    bus.subscribe("tick", on_tick)  # not in __init__ nor a loop: a one-off registration


for _name in ("a", "b"):
    bus_at_import = None
    if bus_at_import is not None:
        bus_at_import.subscribe(_name, on_tick)  # a module-level loop runs once


class Own:
    def __init__(self, db):
        self.register(self.on_x)  # the instance's own registry dies with it
        self.conn = sqlite3.connect(db, factory=self.on_x)  # a module's connect: no emitter

    def register(self, cb):
        return cb

    def on_x(self):
        return self.conn


class Connection:
    def __init__(self, sock, address):
        sock.connect(address)  # not a callback: a socket connect
        self.sock = sock


class Handlers:
    def __init__(self):
        signal.signal(signal.SIGTERM, self.on_term)  # expect: MW401

    def on_term(self, signum, frame):
        return signum


class Saver:
    def __init__(self, bus):
        self._bus = bus
        self._bus.subscribe("tick", self.on_tick)  # expect: MW401
        self.button = make_button()
        self.button.clicked.connect(self.on_tick)  # its own child widget dies with it
        local = make_button()
        local.connect("pressed", self.on_tick)  # created here: owned

    def on_tick(self, e):
        return e


def make_button():
    return None


def restore(signals, old_handlers):
    for sig in signals:
        signal.signal(sig, old_handlers[sig])  # the restore itself


class Outer:
    class Inner:
        def __init__(self, bus):
            bus.subscribe("x", self.on_x)  # expect: MW401

        def on_x(self, e):
            return e
