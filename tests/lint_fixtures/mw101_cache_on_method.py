"""MW101 cache-on-method: positive cases carry `# expect: MW101` on the decorator line."""

import functools
import functools as ft
from functools import cache, cached_property, lru_cache
from functools import lru_cache as memo


class Report:
    @functools.lru_cache(maxsize=None)  # expect: MW101
    def total(self):
        return 1

    @functools.lru_cache(maxsize=128)  # expect: MW101
    def bounded(self, x):
        return x

    @functools.lru_cache  # expect: MW101
    def bare(self):
        return 2

    @ft.cache  # expect: MW101
    def aliased_module(self):
        return 3

    @memo()  # expect: MW101
    def aliased_function(self):
        return 4

    @cache  # expect: MW101
    async def async_method(self):
        return 5

    @property
    @lru_cache()  # expect: MW101
    def stacked_property(self):
        return 6

    @staticmethod
    @lru_cache(maxsize=None)
    def static(x):
        return x

    @classmethod
    @functools.cache
    def klass(cls):
        return cls

    @lru_cache
    @classmethod
    def klass_outer(cls):
        return cls

    @cached_property
    def per_instance(self):
        return 7

    @functools.cached_property
    def per_instance_qualified(self):
        return 8

    def plain(self):
        @lru_cache
        def inner(x):  # a local function, not a method
            return x

        return inner(1)

    class Nested:
        @functools.lru_cache()  # expect: MW101
        def nested_method(self):
            return 9

    if True:

        @cache  # expect: MW101
        def conditional(self):
            return 10


@lru_cache(maxsize=None)
def module_function(x):
    return x


@functools.cache
async def async_function(x):
    return x


class Meta(type):
    @functools.lru_cache  # a metaclass's instances are classes: they live forever anyway
    def registry(cls):
        return {}


def lru_cache_lookalike(f):
    return f


class Other:
    @lru_cache_lookalike
    def not_a_cache(self):
        return 11
