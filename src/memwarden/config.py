"""Memory configuration: limits, thresholds, intervals and the three playbook profiles.

Values resolve in this order, each remembering where it came from:
explicit arguments > ``MEMWARDEN_*`` environment variables > ``[tool.memwarden]``
in the nearest ``pyproject.toml`` > the profile's defaults. Thresholds accept a
fraction of ``max_memory_bytes`` (``0.8``), a percentage (``"80%"``) or a size with a
unit (``"2.8 GB"``); a bare number above 1 is refused, not read as bytes.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from memwarden._units import format_size, parse_size
from memwarden.exceptions import ConfigurationError
from memwarden.levels import Thresholds
from memwarden.probes import effective_limit

__all__ = [
    "PROFILES",
    "MemoryConfig",
    "Profile",
    "find_pyproject",
    "load_config",
    "read_tool_table",
]

Profile = Literal["development", "testing", "production"]

ENV_PREFIX = "MEMWARDEN_"

#: The shortest sampling (and forced-gc) interval accepted: 1 ms. Below it a sampler
#: thread would spin instead of sleeping.
MIN_INTERVAL_S = 0.001

#: The share of the effective limit kept free by default: room for the interpreter,
#: native libraries and the page cache charged to a cgroup (the playbook leaves
#: 3.5 of 4 GB, about 12%; we keep 10%).
DEFAULT_SAFETY_MARGIN = 0.10

# Each profile follows the playbook's "Environment-Specific Settings".
PROFILES: dict[str, dict[str, Any]] = {
    # Detailed monitoring, lower thresholds for early detection, verbose logging.
    "development": {
        "warning_threshold": 0.7,
        "critical_threshold": 0.85,
        "pressure_threshold": 0.8,
        "monitoring_interval_s": 1.0,
        "log_level": "DEBUG",
        "leak_detection": True,
        "fail_fast": False,
        "graceful_degradation": True,
    },
    # Per-test limits, leak detection on, fail fast.
    "testing": {
        "warning_threshold": 0.8,
        "critical_threshold": 0.9,
        "pressure_threshold": 0.85,
        "monitoring_interval_s": 0.1,
        "log_level": "INFO",
        "leak_detection": True,
        "fail_fast": True,
        "graceful_degradation": False,
    },
    # Conservative limits, graceful degradation, alerting without crashing.
    "production": {
        "warning_threshold": 0.8,
        "critical_threshold": 0.9,
        "pressure_threshold": 0.85,
        "monitoring_interval_s": 5.0,
        "log_level": "WARNING",
        "leak_detection": False,
        "fail_fast": False,
        "graceful_degradation": True,
    },
}

_THRESHOLDS = ("warning_threshold", "critical_threshold", "pressure_threshold", "release_threshold")


@dataclass(frozen=True)
class MemoryConfig:
    """Resolved memory settings.

    Attributes:
        max_memory_bytes: the budget everything is measured against.
        warning_threshold: fraction of ``max_memory_bytes`` at which the monitor warns.
        critical_threshold: fraction at which the monitor and the governor report CRITICAL
            (the one meaning of CRITICAL, see :mod:`memwarden.levels`).
        pressure_threshold: fraction at which the governor starts relief (85%, as the playbook).
        release_threshold: fraction below which pressure ends again (no flapping).
        hysteresis: fraction of ``max_memory_bytes`` usage must fall below a level to leave it.
        monitoring_interval_s: seconds between monitor samples.
        gc_interval_s: force ``gc.collect()`` this often; None never forces.
        history_size: samples kept in the monitor's ring.
        profile: the profile the defaults came from.
        log_level: level for the ``memwarden`` loggers.
        leak_detection: whether leak checks are on by default (testing, development).
        fail_fast: raise on a breached limit rather than warn (testing).
        graceful_degradation: shrink caches and pause producers under pressure (production).
        sources: for each field, where its value came from.
    """

    max_memory_bytes: int
    warning_threshold: float = 0.8
    critical_threshold: float = 0.9
    pressure_threshold: float = 0.85
    release_threshold: float = 0.75
    hysteresis: float = 0.05
    monitoring_interval_s: float = 5.0
    gc_interval_s: float | None = None
    history_size: int = 3600
    profile: Profile = "production"
    log_level: str = "WARNING"
    leak_detection: bool = False
    fail_fast: bool = False
    graceful_degradation: bool = True
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def warning_bytes(self) -> int:
        """The warning level in bytes."""
        return int(self.max_memory_bytes * self.warning_threshold)

    @property
    def critical_bytes(self) -> int:
        """The critical level in bytes."""
        return int(self.max_memory_bytes * self.critical_threshold)

    @property
    def pressure_bytes(self) -> int:
        """Usage at which pressure starts, in bytes."""
        return int(self.max_memory_bytes * self.pressure_threshold)

    @property
    def release_bytes(self) -> int:
        """Usage below which pressure ends, in bytes."""
        return int(self.max_memory_bytes * self.release_threshold)

    @property
    def thresholds(self) -> Thresholds:
        """The level lines shared by the monitor and the governor (see :mod:`memwarden.levels`)."""
        return Thresholds(
            warning=self.warning_threshold,
            pressure=self.pressure_threshold,
            critical=self.critical_threshold,
            release=self.release_threshold,
            hysteresis=self.hysteresis,
        )

    def source_of(self, name: str) -> str:
        """Where the value of field ``name`` came from (``"default"`` when unrecorded)."""
        return self.sources.get(name, "default")

    def with_(self, **changes: Any) -> MemoryConfig:
        """Return a copy with ``changes`` applied (validated like any other config)."""
        srcs = dict(self.sources)
        for k in changes:
            srcs[k] = "argument"
        return replace(self, sources=srcs, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-ready values, each with its source."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "sources":
                continue
            out[f.name] = {"value": getattr(self, f.name), "source": self.source_of(f.name)}
        return out


def _is_int(value: object) -> bool:
    # bool is an int subclass: `history_size = true` must not mean 1.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """A real, non-NaN number that is not a bool."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not math.isnan(value)


def _where(cfg: MemoryConfig, name: str) -> str:
    return cfg.source_of(name)


def _validate(cfg: MemoryConfig) -> None:
    def bad(name: str, why: str) -> ConfigurationError:
        value = getattr(cfg, name)
        return ConfigurationError(
            f"{name}={value!r} ({_where(cfg, name)}): {why}", value=value, source=_where(cfg, name)
        )

    if not _is_int(cfg.max_memory_bytes) or cfg.max_memory_bytes <= 0:
        raise bad("max_memory_bytes", "expected a positive size like '2 GiB'")
    for name in _THRESHOLDS:
        v = getattr(cfg, name)
        if not _is_number(v) or not 0 < v <= 1:
            raise bad(
                name,
                "expected a fraction in (0, 1] like 0.8, a percentage like '80%', "
                "or a size with a unit below max_memory like '2.8 GB'",
            )
    if not cfg.warning_threshold < cfg.critical_threshold:
        raise bad(
            "warning_threshold",
            f"must be below critical_threshold={cfg.critical_threshold!r} "
            f"({_where(cfg, 'critical_threshold')})",
        )
    if not cfg.release_threshold < cfg.pressure_threshold:
        raise bad(
            "release_threshold",
            f"must be below pressure_threshold={cfg.pressure_threshold!r} "
            f"({_where(cfg, 'pressure_threshold')}) so pressure does not flap",
        )
    h = cfg.hysteresis
    # -0.0 compares equal to 0 but is almost always a typo for something else.
    if not _is_number(h) or not 0 <= h < 0.5 or math.copysign(1.0, h) < 0:
        raise bad("hysteresis", "expected a fraction in [0, 0.5) like 0.05")
    iv = cfg.monitoring_interval_s
    if not _is_number(iv) or not MIN_INTERVAL_S <= iv <= 3600:
        raise bad(
            "monitoring_interval_s",
            f"expected seconds in [{MIN_INTERVAL_S:g}, 3600] like 5 or 0.1 "
            "(shorter intervals would busy-loop the sampler)",
        )
    gi = cfg.gc_interval_s
    if gi is not None and (not _is_number(gi) or not MIN_INTERVAL_S <= gi < math.inf):
        raise bad(
            "gc_interval_s",
            f"expected finite seconds >= {MIN_INTERVAL_S:g}, or None to never force gc",
        )
    if not _is_int(cfg.history_size) or not 1 <= cfg.history_size <= 10_000_000:
        raise bad("history_size", "expected a whole number of samples in [1, 10000000]")
    if cfg.profile not in PROFILES:
        raise bad("profile", f"expected one of {', '.join(sorted(PROFILES))}")
    if cfg.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise bad("log_level", "expected DEBUG, INFO, WARNING, ERROR or CRITICAL")


# ---------------------------------------------------------------------------
# loading


def find_pyproject(start: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the nearest ``pyproject.toml`` at or above ``start`` (default: the cwd)."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        candidate = d / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_tool_table(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the ``[tool.memwarden]`` table of a ``pyproject.toml`` (empty when absent).

    Shared by the memory configuration and by other components' sub-tables
    (``[tool.memwarden.lint]``).

    Raises:
        ConfigurationError: the file cannot be read or parsed, or the entry is not a table.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"{path}: cannot read [tool.memwarden]: not valid UTF-8 (byte {exc.start})",
            source=str(path),
        ) from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(
            f"{path}: cannot read [tool.memwarden]: {exc}", source=str(path)
        ) from exc
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigurationError(
            f"{path}: 'tool' must be a table, got {type(tool).__name__} {tool!r:.40}",
            value=tool,
            source=str(path),
        )
    section = tool.get("memwarden", {})
    if not isinstance(section, dict):
        raise ConfigurationError(
            f"{path}: [tool.memwarden] must be a table, got {type(section).__name__} "
            f"{section!r:.40}",
            value=section,
            source=str(path),
        )
    return section


_ALIASES = {
    # The playbook's names, accepted in files and the environment.
    "max_memory": "max_memory_bytes",
    "max_memory_mb": "max_memory_bytes",
    "warning_threshold_mb": "warning_threshold",
    "critical_threshold_mb": "critical_threshold",
    "monitoring_interval": "monitoring_interval_s",
    "gc_interval": "gc_interval_s",
}
_FIELD_NAMES = {f.name for f in fields(MemoryConfig)} - {"sources"}
# Sub-tables of [tool.memwarden] that belong to other components.
_OTHER_TABLES = {"heap", "lint", "pytest", "report"}


def _from_megabytes(key: str, value: Any) -> Any:
    """The playbook's ``*_mb`` settings are megabytes (binary, as Node counts): add the unit."""
    if not key.endswith("_mb") or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return f"{value} MiB"
    text = str(value).strip()
    try:
        float(text)
    except ValueError:
        return value  # already has a unit, or is invalid: reported when coerced
    return f"{text} MiB"


def _coerce(key: str, raw: Any, source: str, max_bytes: int) -> Any:
    """Turn a raw value (string from the environment, TOML value) into the field's type.

    ``key`` is the setting as the user wrote it (``max_memory_mb``); errors name it.
    """
    name = _ALIASES.get(key, key)
    where = (
        f"{ENV_PREFIX}{key.upper()}={raw!r} ({source})"
        if source == "environment"
        else f"{key}={raw!r} ({source})"
    )
    try:
        if name == "max_memory_bytes":
            return parse_size(raw, source=source)
        if name in _THRESHOLDS:
            return _threshold(raw, max_bytes)
        if name in ("monitoring_interval_s", "gc_interval_s", "hysteresis"):
            if name == "gc_interval_s" and (
                raw is None or str(raw).strip().lower() in ("", "none", "never", "off")
            ):
                return None
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)
            if math.isnan(value):
                raise ValueError
            return value
        if name == "history_size":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
        if name in ("leak_detection", "fail_fast", "graceful_degradation"):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if name in ("profile", "log_level"):
            if not isinstance(raw, str):
                raise ValueError
            return raw.strip().lower() if name == "profile" else raw.strip().upper()
    except _NotAFractionError as exc:
        raise ConfigurationError(
            f"{where}: a bare number above 1 is not a threshold; write a fraction "
            f"({_percent_hint(raw)}), a percentage ('{raw}%') or a size with a unit "
            "('2.8 GB')",
            value=raw,
            source=source,
        ) from exc
    except _AboveMaxError as exc:
        raise ConfigurationError(
            f"{where} is above max_memory_bytes={format_size(max_bytes or 0)}",
            value=raw,
            source=source,
        ) from exc
    except (ValueError, TypeError) as exc:
        hint = _HINTS.get(name, "invalid value")
        raise ConfigurationError(f"{where}: {hint}", value=raw, source=source) from exc
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"{where}: {_HINTS.get(name, exc)}", value=raw, source=source
        ) from exc
    raise ConfigurationError(
        f"{where}: unknown setting", value=raw, source=source
    )  # pragma: no cover


_HINTS = {
    "max_memory_bytes": "expected a size like '2 GiB', '3500MB' or 1073741824",
    "warning_threshold": "expected a fraction like 0.8 or a size like '2.8 GB'",
    "critical_threshold": "expected a fraction like 0.9 or a size like '3.2 GB'",
    "pressure_threshold": "expected a fraction like 0.85 or a size like '3 GB'",
    "release_threshold": "expected a fraction like 0.75 or a size like '2.6 GB'",
    "monitoring_interval_s": "expected seconds like 5 or 0.1",
    "gc_interval_s": "expected seconds like 60, or 'never'",
    "hysteresis": "expected a fraction like 0.05",
    "history_size": "expected a whole number of samples like 3600",
    "leak_detection": "expected true or false",
    "fail_fast": "expected true or false",
    "graceful_degradation": "expected true or false",
    "profile": "expected development, testing or production",
    "log_level": "expected DEBUG, INFO, WARNING, ERROR or CRITICAL",
}


def _threshold(raw: Any, max_bytes: int) -> float:
    """A fraction of ``max_bytes`` from a fraction, a percentage or a size with a unit.

    ``0.8``, ``"0.8"`` and ``"80%"`` are fractions; ``"2.8 GB"`` (a unit is required) is a
    size. A bare number above 1 (``80``, ``"3000000000"``) is refused: it is a percentage
    or a size missing its unit, and reading it as bytes would make every process critical.
    """
    if isinstance(raw, bool):
        raise ValueError(raw)
    text = raw if isinstance(raw, int | float) else str(raw).strip()
    if isinstance(text, str) and text.endswith("%"):
        value = float(text[:-1].strip()) / 100
        if math.isnan(value) or not 0 < value <= 1:
            raise ValueError(raw)
        return value
    if isinstance(text, str):
        try:
            value = float(text)
        except ValueError:
            size = float(parse_size(text))
            if size <= 0:
                raise ValueError(raw) from None
            if size > max_bytes:
                raise _AboveMaxError(raw) from None
            return size / max_bytes
    else:
        value = float(text)
    if math.isnan(value) or value <= 0:
        raise ValueError(raw)
    if value > 1:
        raise _NotAFractionError(raw)
    return value


def _percent_hint(raw: Any) -> str:
    try:
        value = float(str(raw).strip())
    except ValueError:
        return "0.8"
    return f"{value / 100:g}" if 1 < value <= 100 else "0.8"


class _AboveMaxError(ValueError):
    """A threshold given as a size larger than max_memory_bytes."""


class _NotAFractionError(ValueError):
    """A threshold given as a bare number above 1 (a percentage or a size without unit)."""


def load_config(
    profile: Profile | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    pyproject: str | os.PathLike[str] | Literal[False] | None = None,
    **overrides: Any,
) -> MemoryConfig:
    """Resolve a :class:`MemoryConfig` from every source.

    Args:
        profile: ``development``, ``testing`` or ``production``; else taken from
            the sources (default ``production``).
        environ: the environment to read ``MEMWARDEN_*`` from (default ``os.environ``).
        pyproject: a ``pyproject.toml`` path, ``None`` to search upward from the cwd,
            or ``False`` to read none.
        **overrides: field values (or the playbook's names, e.g. ``max_memory``),
            highest precedence.

    Raises:
        ConfigurationError: any value is invalid; the message names it and its source.
    """
    env = os.environ if environ is None else environ
    layers: list[tuple[str, dict[str, Any]]] = []  # lowest precedence first

    if pyproject is not False:
        path = find_pyproject() if pyproject is None else Path(pyproject)
        if path is not None:
            if not path.is_file():
                raise ConfigurationError(
                    f"pyproject={str(path)!r}: no such file", source="argument"
                )
            section = {k: v for k, v in read_tool_table(path).items() if k not in _OTHER_TABLES}
            layers.append((str(path), section))
    env_values = {
        k[len(ENV_PREFIX) :].lower(): v
        for k, v in env.items()
        if k.startswith(ENV_PREFIX)
        and k[len(ENV_PREFIX) :].lower() in (_FIELD_NAMES | set(_ALIASES))
    }
    layers.append(("environment", env_values))
    explicit = dict(overrides)
    if profile is not None:
        explicit["profile"] = profile
    layers.append(("argument", explicit))

    raw: dict[str, tuple[Any, str, str]] = {}  # name -> (value, source, key as written)
    for source, values in layers:
        for key, value in values.items():
            name = _ALIASES.get(key, key)
            if name not in _FIELD_NAMES:
                known = ", ".join(sorted(_FIELD_NAMES))
                raise ConfigurationError(
                    f"{key}={value!r} ({source}): unknown setting; known: {known}",
                    value=value,
                    source=source,
                )
            raw[name] = (_from_megabytes(key, value), source, key)

    resolved: dict[str, Any] = {}
    sources: dict[str, str] = {}
    prof_raw = raw.get("profile", ("production", "default", "profile"))
    prof = _coerce(prof_raw[2], prof_raw[0], prof_raw[1], 0)
    if prof not in PROFILES:
        raise ConfigurationError(
            f"profile={prof_raw[0]!r} ({prof_raw[1]}): {_HINTS['profile']}",
            value=prof_raw[0],
            source=prof_raw[1],
        )
    resolved["profile"] = prof
    sources["profile"] = prof_raw[1]
    for name, value in PROFILES[prof].items():
        resolved[name] = value
        sources[name] = f"profile {prof}"

    if "max_memory_bytes" in raw:
        v, s, key = raw["max_memory_bytes"]
        resolved["max_memory_bytes"] = _coerce(key, v, s, 0)
        sources["max_memory_bytes"] = s
    else:
        lim = effective_limit()
        resolved["max_memory_bytes"] = int(lim.limit_bytes * (1 - DEFAULT_SAFETY_MARGIN))
        sources["max_memory_bytes"] = f"{lim.source} less {DEFAULT_SAFETY_MARGIN:.0%}"
    max_bytes = resolved["max_memory_bytes"]

    for name, (v, s, key) in raw.items():
        if name in ("profile", "max_memory_bytes"):
            continue
        resolved[name] = _coerce(key, v, s, max_bytes)
        sources[name] = s
    return MemoryConfig(**resolved, sources=sources)
