"""MW401 negative cases: every registration has a matching removal in the module."""

import signal


class Widget:
    def __init__(self, bus, emitter):
        self.bus = bus
        bus.subscribe("tick", self.on_tick)
        emitter.on("data", self.on_data)
        self._old = signal.signal(signal.SIGINT, self.on_int)

    def on_tick(self, event):
        return event

    def on_data(self, data):
        return data

    def on_int(self, signum, frame):
        return signum

    def close(self, emitter):
        self.bus.unsubscribe("tick", self.on_tick)
        emitter.off("data", self.on_data)


def loop(bus, items):
    for item in items:
        bus.subscribe("x", item.on_x)
