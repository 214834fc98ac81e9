"""Build the optional C extension ``memwarden._sampler`` (the native sampling heap profiler).

Everything else about the package is declared in pyproject.toml. The extension is
optional: where it cannot be compiled (no compiler or Python headers) the install still
succeeds and ``memwarden.profiler`` falls back to tracemalloc.
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
        )
    ]
)
