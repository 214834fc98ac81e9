"""Suppression comments: only the unsuppressed findings are expected."""

import json


def f(x):
    a = json.loads(json.dumps(x))  # memwarden: ignore[MW301]
    b = json.loads(json.dumps(x))  # memwarden: ignore
    c = json.loads(json.dumps(x))  # memwarden: ignore[MW101, MW301]
    d = json.loads(json.dumps(x))  # memwarden: ignore[MW101]  # expect: MW301
    e = json.loads(json.dumps(x))  # MEMWARDEN: IGNORE[mw301]
    g = (json.loads(json.dumps(x)), "# memwarden: ignore")  # expect: MW301
    return a, b, c, d, e, g
