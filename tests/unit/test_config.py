from __future__ import annotations

from pathlib import Path

import pytest

from motion_meta_cli.config import (
    CACHE_SCHEMES,
    MetaPlatformConfig,
    SentinelURL,
    Settings,
    load_settings,
    parse_backend_url,
    parse_sentinel_url,
)
from motion_meta_cli.errors import ConfigError


def test_defaults_match_the_documented_ones(home: Path) -> None:
    settings = load_settings()
    assert settings.meta_graph_url == "https://graph.facebook.com"
    assert settings.meta_api_version == "v25.0"
    assert settings.services_meta_user_concurrent_requests == 1
    assert settings.motion_meta_home == home
    assert settings.meta_access_token is None
    assert settings.platform_for("me") == MetaPlatformConfig()


def test_home_defaults_to_the_per_user_app_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOTION_META_HOME")
    assert load_settings().motion_meta_home.name == "motion-meta"


def test_nested_variables_change_the_platform_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("META_PLATFORM__RETRY__MAX_ATTEMPTS", "7")
    monkeypatch.setenv("META_PLATFORM__THROTTLE__PAUSE_FLOOR_S", "5")
    monkeypatch.setenv("META_PLATFORM__RATE_LIMIT__APP_CODES", "[4, 341]")
    platform = load_settings().platform_for("me")
    assert platform.retry.max_attempts == 7
    assert platform.throttle.pause_floor_s == 5
    assert platform.rate_limit.throttle_rules().app_codes == frozenset({4, 341})


def test_endpoint_override_is_merged_over_the_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("META_PLATFORM__RETRY__MAX_ATTEMPTS", "7")
    monkeypatch.setenv("META_ENDPOINTS__ME__RETRY__BACKOFF_CAP_S", "3")
    settings = load_settings()
    me = settings.platform_for("me")
    assert me.retry.backoff_cap_s == 3
    assert me.retry.max_attempts == 7, "keys the override leaves out come from the platform"
    assert settings.platform_for("insights").retry.backoff_cap_s == 30


def test_blocks_can_be_given_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("META_PLATFORM", '{"retry": {"max_attempts": 2}}')
    assert load_settings().meta_platform.retry.max_attempts == 2


def test_dotenv_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("META_API_VERSION=v24.0\nMETA_ACCESS_TOKEN=EAAfromdotenv\n")
    settings = load_settings()
    assert settings.meta_api_version == "v24.0"
    assert settings.meta_access_token is not None
    assert settings.meta_access_token.get_secret_value() == "EAAfromdotenv"
    assert "EAAfromdotenv" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("META_GRAPH_URL", "not a url", "META_GRAPH_URL"),
        ("META_GRAPH_URL", "ftp://graph.facebook.com", "META_GRAPH_URL"),
        ("META_API_VERSION", "25", "META_API_VERSION"),
        ("META_ACCESS_TOKEN", "   ", "META_ACCESS_TOKEN is empty"),
        ("SERVICES_META_USER_CONCURRENT_REQUESTS", "0", "SERVICES_META_USER_CONCURRENT_REQUESTS"),
        ("META_PLATFORM__RETRY__MAX_ATTEMPTS", "many", "META_PLATFORM__RETRY__MAX_ATTEMPTS"),
        ("META_PLATFORM__RETRY__MAX_ATEMPTS", "3", "META_PLATFORM__RETRY__MAX_ATEMPTS is not a setting"),
        ("META_PLATFORM__THROTTLE__PAUSE_FLOOR_S", "5000", "must not exceed pause_cap_s (900)"),
        (
            "META_ENDPOINTS__ME__RETRY__JITTER_RATIO",
            "2",
            "META_ENDPOINTS__ME__RETRY__JITTER_RATIO Input should be less than",
        ),
        ("MOTION_META_LOG_LEVEL", "chatty", "MOTION_META_LOG_LEVEL"),
    ],
)
def test_invalid_values_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("invalid configuration:")
    assert expected in message
    assert "\n" not in message


def test_unknown_key_in_dotenv_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("META_GRAF_URL=http://x\n")
    with pytest.raises(ConfigError, match="META_GRAF_URL is not a setting"):
        load_settings()


def test_graph_url_loses_its_trailing_slash() -> None:
    assert Settings(meta_graph_url="http://127.0.0.1:9/").meta_graph_url == "http://127.0.0.1:9"


def test_user_fields_are_split() -> None:
    assert Settings(meta_user_fields="id, name,,email").user_fields == ("id", "name", "email")


def test_rate_limit_timings_scale_from_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().platform_for("me").throttle.floor_s == 60
    monkeypatch.setenv("META_RATE_WINDOW_S", "2")
    throttle = load_settings().platform_for("me").throttle
    assert (throttle.window_s, throttle.floor_s, throttle.cap_s, throttle.max_s) == (2, 2 / 60, 0.5, 10800)
    assert throttle.counted_window_s == pytest.approx(2.1)
    monkeypatch.setenv("META_PLATFORM__THROTTLE__PAUSE_CAP_S", "7")
    assert load_settings().platform_for("me").throttle.cap_s == 7, "explicit settings still override"


def test_a_relative_home_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTION_META_HOME", "state")
    settings = load_settings()
    assert settings.motion_meta_home == tmp_path / "state"
    assert settings.store_backend.target == str(tmp_path / "state" / "store.db")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "META_PLATFORM__RETRY",
            "{bad",
            "META_PLATFORM (or one of its META_PLATFORM__... variables) is not valid JSON",
        ),
        (
            "META_PLATFORM__RETRY__READ_TIMEOUT_S",
            "inf",
            "META_PLATFORM__RETRY__READ_TIMEOUT_S Input should be a finite",
        ),
        ("META_PLATFORM__RETRY__READ_TIMEOUT_S", "1e308", "META_PLATFORM__RETRY__READ_TIMEOUT_S Input should be less"),
        ("META_PLATFORM__THROTTLE__PAUSE_FLOOR_S", "nan", "META_PLATFORM__THROTTLE__PAUSE_FLOOR_S"),
        ("META_ENDPOINTS", "[" * 5000 + "]" * 5000, "META_ENDPOINTS"),
        ("MOTION_META_HOME", "~nonexistentuser/x", "starts with a ~user that does not exist"),
        ("MOTION_META_CACHE_URL", "redis://127.0.0.1:-5/0", "has no valid port"),
        ("MOTION_META_CACHE_URL", "redis://127.0.0.1:1/abc", "names no database number"),
        ("MOTION_META_CACHE_URL", "redis+cluster://127.0.0.1:7000/2", "a Redis Cluster has database 0 only"),
        ("MOTION_META_CACHE_URL", "redis+cluster://:7000", "names no host"),
        ("META_GRAPH_URL", "http://127.0.0.1:99999", "has no valid port"),
        ("META_GRAPH_URL", "http://127.0.0.1:8765/v25.0", "ends with an API version"),
    ],
)
def test_values_that_once_escaped_as_exit_1_are_configuration_errors(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_dotenv_line_that_is_not_key_value_is_an_error_naming_the_line_not_its_content(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("META_GRAPH_URL=https://graph.facebook.com\nEAAsecretPastedAlone12345\n")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == ".env line 2 is not KEY=VALUE (nor a comment or a blank line)"


def test_a_dotenv_that_is_not_utf8_is_an_error_naming_the_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"# fine\nMETA_GRAPH_URL=\xff\xfe\n")
    with pytest.raises(ConfigError, match=r"^\.env line 2 is not UTF-8 text"):
        load_settings()


def test_the_example_file_works_as_copied(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / ".env.example"
    (tmp_path / ".env").write_text(example.read_text())
    settings = load_settings()
    assert settings.meta_access_token is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://10.0.0.1:26379/mymaster",
            SentinelURL((("10.0.0.1", 26379),), "mymaster", 0, None, None, False),
        ),
        (
            "redis+sentinel://:s%40cret@s1:26379,s2:26380/cache.master/3",
            SentinelURL((("s1", 26379), ("s2", 26380)), "cache.master", 3, None, "s@cret", False),
        ),
        (
            "rediss+sentinel://app:pw@s1,[::1]:5000/mymaster/",
            SentinelURL((("s1", 26379), ("::1", 5000)), "mymaster", 0, "app", "pw", True),
        ),
    ],
)
def test_a_sentinel_url_names_the_sentinels_the_service_and_the_masters_database_and_credentials(
    url: str, expected: SentinelURL
) -> None:
    assert parse_sentinel_url(url) == expected
    assert Settings(motion_meta_cache_url=url).cache_backend.scheme == url.partition("://")[0]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel:///mymaster", "names no Sentinel host"),
        ("redis+sentinel://s1:26379,/mymaster", "names no Sentinel host"),
        ("redis+sentinel://:pw@/mymaster", "names no Sentinel host"),
        ("redis+sentinel://s1:99999/mymaster", "has no valid port"),
        ("redis+sentinel://s1:0/mymaster", "has no valid port"),
        ("redis+sentinel://s1,s2:x/mymaster", "has no valid port"),
        ("redis+sentinel://s1:26379", "names no service"),
        ("redis+sentinel://s1:26379/", "names no service"),
        ("redis+sentinel://s1:26379/my master", "names no service"),
        ("redis+sentinel://s1:26379/mymaster/x", "names no database number after the service"),
        ("redis+sentinel://s1:26379/mymaster/0/1", "names no database number after the service"),
    ],
)
def test_a_bad_sentinel_url_is_a_one_line_configuration_error(
    monkeypatch: pytest.MonkeyPatch, url: str, message: str
) -> None:
    monkeypatch.setenv("MOTION_META_CACHE_URL", url)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_unsupported_cache_url_shows_the_sentinel_form_too() -> None:
    with pytest.raises(ValueError, match=r"or redis\+sentinel://:password@sentinel-1\.example\.com:26379,"):
        parse_backend_url("memcached://127.0.0.1", CACHE_SCHEMES)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret-pw@127.0.0.1:99999/0",
        "rediss://app:s3cret-pw@redis.example.com/x",
        "redis+sentinel://:s3cret-pw@s1:26379",
        "redis+cluster://app:s3cret-pw@node:6379/3",
    ],
)
def test_a_bad_redis_url_is_shown_without_its_password(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("MOTION_META_CACHE_URL", url)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "s3cret-pw" not in str(caught.value)
    assert ":***@" in str(caught.value), str(caught.value)
