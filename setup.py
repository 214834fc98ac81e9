"""Build the optional C extensions of memwarden.

``memwarden._sampler`` is the native sampling heap profiler; ``memwarden._lrucore`` the
hit path of ``memwarden.cache.LRUCache``. Everything else about the package is declared
in pyproject.toml. Both are optional: where they cannot be compiled (no compiler or
Python headers) the install still succeeds, ``memwarden.profiler`` falls back to
tracemalloc and ``LRUCache.get`` stays Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "memwarden._sampler",
            sources=["src/memwarden/_sampler.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            libraries=["m"],
            optional=True,
        ),
        Extension(
            "memwarden._lrucore",
            sources=["src/memwarden/_lrucore.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
    ]
)
