"""MW301 deep-clone: positive cases carry `# expect: MW301`."""

import copy
import json
import pickle
import pickle as pk
from copy import deepcopy
from json import dumps, loads


def clones(state):
    a = json.loads(json.dumps(state))  # expect: MW301
    b = pickle.loads(pickle.dumps(state))  # expect: MW301
    c = loads(dumps(state))  # expect: MW301
    d = pk.loads(pk.dumps(state, protocol=5))  # expect: MW301
    return a, b, c, d


async def async_clone(state):
    return json.loads(json.dumps(state))  # expect: MW301


def fine(state, text):
    a = json.loads(text)
    b = json.dumps(state)
    c = copy.copy(state)
    d = dict(state)
    e = json.loads(pickle.dumps(state))  # mixed libraries: not a round trip
    f = copy.deepcopy(state)  # whether a deep copy is needed cannot be told from the code
    g = deepcopy(state)
    return a, b, c, d, e, f, g


def check_picklable(obj):
    return pickle.loads(pickle.dumps(obj))  # the round trip is the point


def validate_roundtrip(doc):
    return json.loads(json.dumps(doc)) == doc


class Store:
    class Snapshot:
        def take(self, state):
            return pickle.loads(pickle.dumps(state))  # expect: MW301
