"""MW102 unbounded-cache: positive cases carry `# expect: MW102` on the definition line."""

import collections
from collections import defaultdict, deque

_results = {}  # expect: MW102
_seen = set()  # expect: MW102
_log = []  # expect: MW102
_by_key = defaultdict(list)  # expect: MW102
_ann: dict[str, int] = {}  # expect: MW102
_history = collections.deque()  # expect: MW102
_bounded_history = deque(maxlen=100)
_evicted = {}
_cleared = []
_replaced = {}
_sized = {}
_handed_over = {}
_only_read = {"a": 1}
_filled_at_import = {}
_codecs = {}
_counter = [0]
_by_kind = {}
_table = []
__all__ = []


def lookup(key):
    if key not in _results:
        _results[key] = key * 2
    return _results[key]


def remember(x):
    _seen.add(x)
    _log.append(x)
    _by_key[x].append(x)
    _ann.setdefault(str(x), x)
    _history.append(x)
    _bounded_history.append(x)


async def async_adder(x):
    _evicted[x] = x


def evict(x):
    _evicted.pop(x, None)


def add_and_clear(x):
    _cleared.append(x)
    if x is None:
        _cleared.clear()


def replace(x):
    global _replaced
    _replaced[x] = x
    _replaced = {}


def bounded(x):
    if len(_sized) > 100:
        return
    _sized[x] = x


def hand_over(x):
    _handed_over[x] = x
    register_elsewhere(_handed_over)


def register_elsewhere(d):
    return d


def register_codec(name, codec):
    _codecs[name] = codec  # a registry filled by registration calls, not by traffic


def count(n):
    _counter[0] += n  # a fixed slot


def by_kind(kind, value):
    _by_kind[kind] = value  # keyed by a name from a domain the program enumerates


def table(n):
    if not _table:
        for i in range(20):
            _table.append(i * n)  # filled once
    return _table


def read(x):
    return _only_read.get(x)


for _i in range(3):
    _filled_at_import[_i] = _i


def shadowing(x):
    _seen = set()  # a local: not the module-level one
    _seen.add(x)
    return _seen


class Registry:
    handlers = {}  # one slot per event name: a registry, bounded by the names
    requests = []  # expect: MW102
    plugins = []
    names = set()

    def on_event(self, name, handler):
        self.handlers[name] = handler

    def record(self, request):
        self.requests.append(request)

    def register(self, name):
        type(self).plugins.append(name)
        self.names.add(name)

    def unregister(self, name):
        self.names.discard(name)

    @classmethod
    def reset(cls):
        cls.plugins = []

    class Inner:
        cache = {}  # expect: MW102

        def put(self, k, v):
            Registry.Inner.cache[k] = v
            self.cache[k] = v


_opcodes = {}


def def_op(name, op):
    _opcodes[name] = op  # only called below, at import time: bounded by the code


def_op("LOAD", 1)
def_op("STORE", 2)

_rules = []


def rule(func):
    _rules.append(func)
    return func


@rule
def first_rule():
    return 1
