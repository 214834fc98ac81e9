"""MW501 unclosed-resource: positive cases carry `# expect: MW501`."""

import socket
import sqlite3
import tempfile
from contextlib import closing


def leaks(path, db):
    f = open(path)  # expect: MW501
    first = f.readline()
    conn = sqlite3.connect(db)  # expect: MW501
    rows = conn.execute("select 1").fetchall()
    open(path, "w")  # expect: MW501
    for line in open(path):  # expect: MW501
        first += line
    s = socket.socket()  # expect: MW501
    s.connect(("127.0.0.1", 1))
    tmp = tempfile.NamedTemporaryFile()  # expect: MW501
    tmp.write(b"x")
    return first, rows


async def async_leak(path):
    data = open(path).readline()  # expect: MW501
    return data


def fine(path, db):
    with open(path) as f:
        a = f.read(10)
    g = open(path)
    try:
        b = g.read(10)
    finally:
        g.close()
    with closing(sqlite3.connect(db)) as conn:
        c = conn.execute("select 1").fetchall()
    h = sqlite3.connect(db)
    with h:
        d = h.execute("select 1")
    with tempfile.TemporaryFile() as tmp:
        tmp.write(b"x")
    return a, b, c, d


def factory(path):
    return open(path)  # the caller owns it


def generator(path):
    f = open(path)
    yield f


def handed_over(path, stack):
    f = open(path)
    stack.enter_context(f)
    stack.enter_context(open(path))


class Owner:
    def __init__(self, path):
        self.fh = open(path)

    def close(self):
        self.fh.close()


class Careless:
    def __init__(self, path):
        self.stream = open(path)  # expect: MW501

    class Nested:
        def __init__(self, db):
            self.db = sqlite3.connect(db)  # expect: MW501


def shadowed():
    def open(x):
        return x

    return open("not a file")


_log_file = None


def open_log(path):
    global _log_file
    _log_file = open(path, "a")  # the module owns it now


def foreign(proc, path):
    proc.stdin = open(path)  # stored on another object: it owns it


class Aliased:
    def __init__(self, path):
        self.file = file = open(path)
        self.first = file.readline()

    def close(self):
        file, self.file = self.file, None
        file.close()


def exec_file(path):
    exec(open(path).read())  # expect: MW501, MW201
