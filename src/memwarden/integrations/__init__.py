"""Exporters and engine integrations (Prometheus, OpenTelemetry, Dask).

Each lives behind an extra and is imported lazily.
"""
