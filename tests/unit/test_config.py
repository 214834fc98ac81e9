"""Configuration: precedence, sources, profiles, thresholds as fractions or sizes, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memwarden.config import PROFILES, MemoryConfig, find_pyproject, load_config
from memwarden.exceptions import ConfigurationError

GB = 10**9


def write_pyproject(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(body)
    return path


def test_precedence_argument_over_env_over_pyproject_over_profile(tmp_path: Path) -> None:
    """Each layer overrides the one below, and each value remembers its source."""
    pp = write_pyproject(
        tmp_path,
        '[tool.memwarden]\nmax_memory = "4 GB"\nwarning_threshold = 0.6\n'
        "critical_threshold = 0.95\nmonitoring_interval_s = 2\n",
    )
    env = {"MEMWARDEN_WARNING_THRESHOLD": "0.65", "MEMWARDEN_MONITORING_INTERVAL_S": "3"}
    cfg = load_config(environ=env, pyproject=pp, monitoring_interval_s=0.5)
    assert cfg.max_memory_bytes == 4 * GB
    assert cfg.source_of("max_memory_bytes") == str(pp)
    assert cfg.warning_threshold == 0.65
    assert cfg.source_of("warning_threshold") == "environment"
    assert cfg.critical_threshold == 0.95
    assert cfg.source_of("critical_threshold") == str(pp)
    assert cfg.monitoring_interval_s == 0.5
    assert cfg.source_of("monitoring_interval_s") == "argument"
    assert cfg.source_of("pressure_threshold") == "profile production"


def test_default_max_memory_is_the_effective_limit_less_a_margin() -> None:
    """Without a setting, max_memory_bytes is 90% of the effective limit, and says so."""
    from memwarden.probes import effective_limit

    cfg = load_config(environ={}, pyproject=False)
    assert cfg.max_memory_bytes == int(effective_limit().limit_bytes * 0.9)
    assert "less 10%" in cfg.source_of("max_memory_bytes")


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profiles_apply_their_defaults(profile: str) -> None:
    """Each profile's defaults are applied and attributed to the profile."""
    cfg = load_config(profile, environ={}, pyproject=False, max_memory="1 GiB")  # type: ignore[arg-type]
    for key, value in PROFILES[profile].items():
        assert getattr(cfg, key) == value
        assert cfg.source_of(key) == f"profile {profile}"


def test_profiles_differ_as_the_playbook_says() -> None:
    """Development is verbose with lower thresholds; testing fails fast; production degrades."""
    dev = load_config("development", environ={}, pyproject=False, max_memory="1 GiB")
    test = load_config("testing", environ={}, pyproject=False, max_memory="1 GiB")
    prod = load_config("production", environ={}, pyproject=False, max_memory="1 GiB")
    assert dev.warning_threshold < prod.warning_threshold
    assert dev.log_level == "DEBUG"
    assert test.fail_fast
    assert test.leak_detection
    assert prod.graceful_degradation
    assert not prod.fail_fast
    assert prod.monitoring_interval_s > dev.monitoring_interval_s


def test_profile_from_environment() -> None:
    """MEMWARDEN_PROFILE selects the profile."""
    cfg = load_config(environ={"MEMWARDEN_PROFILE": "testing"}, pyproject=False, max_memory="1 GB")
    assert cfg.profile == "testing"
    assert cfg.source_of("profile") == "environment"


def test_thresholds_as_sizes_become_fractions() -> None:
    """A threshold given as a size is a fraction of max_memory_bytes (the playbook's *_MB)."""
    env = {
        "MEMWARDEN_MAX_MEMORY_MB": "3500",
        "MEMWARDEN_WARNING_THRESHOLD_MB": "2800",
        "MEMWARDEN_CRITICAL_THRESHOLD": "3200 MiB",
    }
    cfg = load_config(environ=env, pyproject=False)
    assert cfg.max_memory_bytes == 3500 * 2**20
    assert cfg.warning_threshold == pytest.approx(0.8)
    assert cfg.critical_threshold == pytest.approx(3200 / 3500)
    assert cfg.warning_bytes == pytest.approx(2800 * 2**20, abs=1)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"MEMWARDEN_WARNING_THRESHOLD": "abc"}, "MEMWARDEN_WARNING_THRESHOLD='abc' (environment)"),
        ({"MEMWARDEN_MAX_MEMORY": "-3 GB"}, "MEMWARDEN_MAX_MEMORY='-3 GB' (environment)"),
        ({"MEMWARDEN_MAX_MEMORY": "lots"}, "expected a size"),
        ({"MEMWARDEN_WARNING_THRESHOLD": "nan"}, "MEMWARDEN_WARNING_THRESHOLD='nan'"),
        ({"MEMWARDEN_WARNING_THRESHOLD": "9 GB"}, "is above max_memory_bytes"),
        ({"MEMWARDEN_MONITORING_INTERVAL_S": "soon"}, "expected seconds"),
        ({"MEMWARDEN_HISTORY_SIZE": "1.5"}, "expected a whole number"),
        ({"MEMWARDEN_FAIL_FAST": "maybe"}, "expected true or false"),
        ({"MEMWARDEN_PROFILE": "dev"}, "expected development, testing or production"),
        ({"MEMWARDEN_LOG_LEVEL": "LOUD"}, "log_level"),
        ({"MEMWARDEN_WARNING_THRESHOLD": "0.95"}, "must be below critical_threshold"),
        ({"MEMWARDEN_RELEASE_THRESHOLD": "0.9"}, "so pressure does not flap"),
        ({"MEMWARDEN_MONITORING_INTERVAL_S": "0"}, "monitoring_interval_s"),
        ({"MEMWARDEN_GC_INTERVAL_S": "-1"}, "gc_interval_s"),
    ],
)
def test_bad_environment_values_name_value_and_source(env: dict[str, str], fragment: str) -> None:
    """Every bad value raises ConfigurationError naming the value and where it came from."""
    env = {"MEMWARDEN_MAX_MEMORY": "4 GB", **env} if "MEMWARDEN_MAX_MEMORY" not in env else env
    with pytest.raises(ConfigurationError) as info:
        load_config(environ=env, pyproject=False)
    assert fragment in str(info.value)


def test_bad_pyproject_values_name_the_file(tmp_path: Path) -> None:
    """A bad value in pyproject.toml names the file; an unknown key lists the known ones."""
    pp = write_pyproject(tmp_path, '[tool.memwarden]\nwarning_threshold = "high"\n')
    with pytest.raises(ConfigurationError, match=str(pp)):
        load_config(environ={}, pyproject=pp, max_memory="1 GB")
    pp.write_text("[tool.memwarden]\nmax_memroy = 5\n")
    with pytest.raises(ConfigurationError, match=r"unknown setting; known: .*max_memory_bytes"):
        load_config(environ={}, pyproject=pp)


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    """Unparsable TOML and a named file that does not exist are clear errors."""
    pp = write_pyproject(tmp_path, "[tool.memwarden\n")
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_config(environ={}, pyproject=pp)
    with pytest.raises(ConfigurationError, match="no such file"):
        load_config(environ={}, pyproject=tmp_path / "nope.toml")


def test_lint_subtable_is_not_configuration(tmp_path: Path) -> None:
    """[tool.memwarden.lint] belongs to the lint and is not read as a memory setting."""
    pp = write_pyproject(
        tmp_path,
        '[tool.memwarden]\nmax_memory = "1 GB"\n[tool.memwarden.lint]\nselect = ["MW101"]\n',
    )
    assert load_config(environ={}, pyproject=pp).max_memory_bytes == GB


def test_find_pyproject_walks_up(tmp_path: Path) -> None:
    """The nearest pyproject.toml at or above the start directory is found."""
    pp = write_pyproject(tmp_path, "")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_pyproject(deep) == pp


def test_gc_interval_never_and_seconds() -> None:
    """gc_interval accepts 'never' (None) or seconds."""
    base = {"MEMWARDEN_MAX_MEMORY": "1 GB"}
    assert (
        load_config(
            environ={**base, "MEMWARDEN_GC_INTERVAL": "never"}, pyproject=False
        ).gc_interval_s
        is None
    )
    assert (
        load_config(environ={**base, "MEMWARDEN_GC_INTERVAL": "60"}, pyproject=False).gc_interval_s
        == 60.0
    )


def test_direct_construction_validates() -> None:
    """MemoryConfig(...) validates like load_config does."""
    assert MemoryConfig(max_memory_bytes=GB).pressure_bytes == int(GB * 0.85)
    with pytest.raises(ConfigurationError, match="max_memory_bytes=0"):
        MemoryConfig(max_memory_bytes=0)
    with pytest.raises(ConfigurationError, match="warning_threshold"):
        MemoryConfig(max_memory_bytes=GB, warning_threshold=0.95)


def test_with_and_to_dict() -> None:
    """with_() records 'argument' as the source; to_dict() is JSON-ready with sources."""
    cfg = load_config(environ={}, pyproject=False, max_memory="1 GB").with_(history_size=10)
    assert cfg.history_size == 10
    assert cfg.source_of("history_size") == "argument"
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["history_size"] == {"value": 10, "source": "argument"}


@given(st.floats(min_value=0.05, max_value=0.85), st.floats(min_value=0.01, max_value=0.14))
def test_any_ordered_thresholds_load(warning: float, gap: float) -> None:
    """Any warning below critical (<= 1) loads and keeps the order."""
    env = {
        "MEMWARDEN_MAX_MEMORY": "1 GB",
        "MEMWARDEN_WARNING_THRESHOLD": repr(warning),
        "MEMWARDEN_CRITICAL_THRESHOLD": repr(warning + gap),
    }
    cfg = load_config(environ=env, pyproject=False)
    assert cfg.warning_bytes < cfg.critical_bytes <= cfg.max_memory_bytes


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"MEMWARDEN_WARNING_THRESHOLD": "80"}, "MEMWARDEN_WARNING_THRESHOLD='80' (environment)"),
        ({"MEMWARDEN_WARNING_THRESHOLD": "80"}, "'80%'"),
        ({"MEMWARDEN_CRITICAL_THRESHOLD": "3000000000"}, "a bare number above 1"),
        ({"MEMWARDEN_WARNING_THRESHOLD": "120%"}, "MEMWARDEN_WARNING_THRESHOLD='120%'"),
    ],
)
def test_thresholds_above_one_are_refused_not_read_as_bytes(
    env: dict[str, str], fragment: str
) -> None:
    """A percentage written as 80 is refused with the value and source, never 80 bytes."""
    with pytest.raises(ConfigurationError) as info:
        load_config(environ={"MEMWARDEN_MAX_MEMORY": "4 GB", **env}, pyproject=False)
    assert fragment in str(info.value)
    assert info.value.source == "environment"


def test_thresholds_as_percentages_and_sizes_with_units(tmp_path: Path) -> None:
    """'80%' is 0.8; a size with a unit stays a size; a number argument above 1 is refused."""
    pp = write_pyproject(tmp_path, '[tool.memwarden]\nwarning_threshold = "70%"\n')
    env = {"MEMWARDEN_CRITICAL_THRESHOLD": "3.6 GB"}
    cfg = load_config(environ=env, pyproject=pp, max_memory="4 GB")
    assert cfg.warning_threshold == pytest.approx(0.7)
    assert cfg.critical_threshold == pytest.approx(0.9)
    with pytest.raises(ConfigurationError, match=r"warning_threshold=80 \(argument\)"):
        load_config(environ={}, pyproject=False, max_memory="4 GB", warning_threshold=80)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("history_size = true\n", "history_size=True"),
        ("monitoring_interval_s = 1e-300\n", "monitoring_interval_s=1e-300"),
        ("monitoring_interval_s = 0.0009\n", "busy-loop"),
        ("hysteresis = -0.0\n", "hysteresis=-0.0"),
        ("gc_interval_s = inf\n", "gc_interval_s=inf"),
        ("fail_fast = 1.5\n", "fail_fast=1.5"),
    ],
)
def test_degenerate_numbers_in_pyproject_are_refused(
    tmp_path: Path, body: str, fragment: str
) -> None:
    """A bool is not a count, 1e-300 s is a busy loop and -0.0 is not a hysteresis."""
    pp = write_pyproject(tmp_path, "[tool.memwarden]\n" + body)
    with pytest.raises(ConfigurationError) as info:
        load_config(environ={}, pyproject=pp, max_memory="1 GB")
    assert fragment in str(info.value)
    assert str(pp) in str(info.value)


def test_direct_construction_refuses_bools_and_negative_zero() -> None:
    """The same rules hold for a MemoryConfig built by hand."""
    with pytest.raises(ConfigurationError, match="history_size"):
        MemoryConfig(max_memory_bytes=GB, history_size=True)
    with pytest.raises(ConfigurationError, match="max_memory_bytes"):
        MemoryConfig(max_memory_bytes=True)
    with pytest.raises(ConfigurationError, match="hysteresis"):
        MemoryConfig(max_memory_bytes=GB, hysteresis=-0.0)
    assert MemoryConfig(max_memory_bytes=GB, monitoring_interval_s=0.001).monitoring_interval_s


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'[tool.memwarden]\nprofile = "\xff\xfe"\n', "not valid UTF-8"),
        (b"tool = 5\n", "'tool' must be a table"),
        (b'[tool]\nmemwarden = "x"\n', "[tool.memwarden] must be a table"),
        (b'[tool.memwarden] = "x"\n', "cannot read"),
    ],
)
def test_broken_pyproject_is_a_configuration_error_naming_the_file(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    """Invalid UTF-8 or a non-table 'tool' gives a ConfigurationError naming the file."""
    pp = tmp_path / "pyproject.toml"
    pp.write_bytes(content)
    with pytest.raises(ConfigurationError) as info:
        load_config(environ={}, pyproject=pp, max_memory="1 GB")
    assert fragment in str(info.value)
    assert str(pp) in str(info.value)
    assert info.value.source == str(pp)
