"""Suppression comments: only the unsuppressed findings are expected."""

import copy
import json


def f(x):
    a = copy.deepcopy(x)  # memwarden: ignore[MW301]
    b = json.loads(json.dumps(x))  # memwarden: ignore
    c = json.loads(json.dumps(x))  # memwarden: ignore[MW101, MW301]
    d = json.loads(json.dumps(x))  # memwarden: ignore[MW101]  # expect: MW301
    e = copy.deepcopy(x)  # MEMWARDEN: IGNORE[mw301]
    g = (copy.deepcopy(x), "# memwarden: ignore")  # expect: MW301
    return a, b, c, d, e, g
