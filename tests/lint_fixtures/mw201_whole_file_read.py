"""MW201 whole-file-read (info): positive cases carry `# expect: MW201`."""

import gzip
import io
from pathlib import Path


def whole(path):
    with open(path) as f:
        return f.read()  # expect: MW201


def lines(path):
    with open(path, encoding="utf-8") as fh:
        return fh.readlines()  # expect: MW201


def assigned(path):
    f = io.open(path)
    data = f.read(-1)  # expect: MW201
    f.close()
    return data


def inline(path):
    return open(path).read()  # expect: MW201, MW501


async def async_read(path):
    with gzip.open(path) as f:
        return f.read()  # expect: MW201


def pathlib_reads(p: Path):
    text = p.read_text(encoding="utf-8")  # expect: MW201
    blob = Path("x").read_bytes()  # expect: MW201
    with p.open("rb") as f:
        head = f.read()  # expect: MW201
    return text, blob, head


def chunked(path):
    with open(path, "rb") as f:
        while chunk := f.read(65536):
            yield chunk


def one_line(path):
    with open(path) as f:
        return f.readline()


def iterate(path):
    with open(path) as f:
        return [line for line in f]


def other_object(sock):
    return sock.read()  # not a file opened in this scope


def opened_elsewhere(f):
    return f.read()  # a parameter: the caller decides


class Reader:
    def read_all(self, path):
        with open(path) as f:
            return f.read()  # expect: MW201
