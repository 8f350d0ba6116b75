"""Random values for the documented variables, through `fetch` in-process: every one is either accepted or
refused with one `error:` line and a documented exit code; never exit 1, never a traceback."""

from __future__ import annotations

import json
import logging

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from motion_meta_cli.cli.main import app

# Every variable .env.example and the README document, with nested ones a user is likely to set.
VARIABLES = [
    "META_ACCESS_TOKEN",
    "META_GRAPH_URL",
    "META_API_VERSION",
    "SERVICES_META_USER_CONCURRENT_REQUESTS",
    "MOTION_META_HOME",
    "MOTION_META_CONCURRENCY",
    "META_USER_FIELDS",
    "MOTION_META_LOG_LEVEL",
    "MOTION_META_CACHE_URL",
    "MOTION_META_STORE_URL",
    "MOTION_META_SECRETS_URL",
    "MOTION_META_CACHE_PREFIX",
    "MOTION_META_REDIS_TIMEOUT_S",
    "META_RATE_WINDOW_S",
    "META_PLATFORM",
    "META_PLATFORM__RETRY",
    "META_PLATFORM__RETRY__MAX_ATTEMPTS",
    "META_PLATFORM__RETRY__READ_TIMEOUT_S",
    "META_PLATFORM__RETRY__CONNECT_TIMEOUT_S",
    "META_PLATFORM__RETRY__RESPONSE_DEADLINE_S",
    "META_PLATFORM__RETRY__MAX_BODY_BYTES",
    "META_PLATFORM__RETRY__BACKOFF_CAP_S",
    "META_PLATFORM__THROTTLE__PAUSE_MAX_S",
    "META_PLATFORM__THROTTLE__GIVE_UP_AFTER_S",
    "META_PLATFORM__THROTTLE__USAGE_THRESHOLD_PCT",
    "META_PLATFORM__THROTTLE__PACING",
    "META_ENDPOINTS",
    "META_ENDPOINTS__ME__RETRY__MAX_ATTEMPTS",
]
DOCUMENTED_EXIT_CODES = {0, 2, 3, 4, 5, 6, 7, 8}

numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["inf", "-inf", "nan", "1e308", "-0", "0", "0x10", "1_000", " 5 ", "", "true"]),
)
urls = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
    st.sampled_from(["http", "https", "redis", "rediss", "sqlite", "dynamodb", "local", "ftp", ""]),
    st.sampled_from(["127.0.0.1", "", "[::1]", "a b", "~", "127.0.0.1@x"]),
    st.sampled_from(["", ":1", ":-5", ":99999", ":0", ":abc", ":65535"]),
    st.sampled_from(["", "/", "/0", "/abc", "/v25.0", "/x/y?z=1", "/#f"]),
)
nested_json = st.integers(min_value=1, max_value=6000).map(lambda depth: "[" * depth + "]" * depth)
json_blocks = st.one_of(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
        lambda children: st.one_of(
            st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
        ),
        max_leaves=6,
    ).map(json.dumps),
    st.sampled_from(['{"max_attempts": 0}', '{"retry": {"read_timeout_s": "inf"}}', "{bad", '{"me": 5}', "[]"]),
)
values = st.one_of(numbers, urls, nested_json, json_blocks, st.text(max_size=30))


@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(variable=st.sampled_from(VARIABLES), value=values)
def test_any_value_of_a_documented_variable_is_accepted_or_refused_in_one_line(variable: str, value: str) -> None:
    logger = logging.getLogger("motion_meta_cli")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    env = {
        # A Graph URL that refuses at once, one attempt, unless the fuzzed variable says otherwise.
        "META_GRAPH_URL": "http://127.0.0.1:9",
        "META_PLATFORM__RETRY__MAX_ATTEMPTS": "1",
        # Retries, if a fuzzed value asks for many, back off for a millisecond: the example stays fast.
        "META_PLATFORM__RETRY__BACKOFF_BASE_S": "0.001",
        "META_PLATFORM__RETRY__BACKOFF_CAP_S": "0.001",
        "META_ACCESS_TOKEN": "EAAfuzzingTheSettings000000",
    }
    if variable in ("META_PLATFORM", "META_PLATFORM__RETRY"):
        for name in [name for name in env if name.startswith("META_PLATFORM__RETRY__")]:
            del env[name]  # a whole block and one of its fields do not mix
    value = value.replace("\x00", "")
    if variable == "MOTION_META_HOME" and value.startswith(("/", "~")):
        value = "./" + value.lstrip("/~")  # relative to the test's own directory: never write outside it
    env[variable] = value
    try:
        run = CliRunner().invoke(app, ["fetch", "--json"], env=env)
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    assert run.exit_code in DOCUMENTED_EXIT_CODES, (variable, value, run.exit_code, run.output)
    assert "Traceback" not in run.output and "unexpected" not in run.output, (variable, value, run.output)
    if run.exit_code != 0:
        errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, (variable, value, run.stderr)
