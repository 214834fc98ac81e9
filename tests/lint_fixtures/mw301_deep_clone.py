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
    e = copy.deepcopy(state)  # expect: MW301
    f = deepcopy(state)  # expect: MW301
    return a, b, c, d, e, f


async def async_clone(state):
    return json.loads(json.dumps(state))  # expect: MW301


def fine(state, text):
    a = json.loads(text)
    b = json.dumps(state)
    c = copy.copy(state)
    d = dict(state)
    e = json.loads(pickle.dumps(state))  # mixed libraries: not a round trip
    return a, b, c, d, e


class Store:
    class Snapshot:
        def take(self, state):
            return pickle.loads(pickle.dumps(state))  # expect: MW301
