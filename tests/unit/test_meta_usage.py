"""parse_usage: every usage header, and every parsing pitfall of reference section 1."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import pytest
from requests.structures import CaseInsensitiveDict

from motion_meta_cli.meta import (
    EMPTY_USAGE,
    AdAccountUsage,
    BusinessUseCaseUsage,
    InsightsThrottle,
    Usage,
    UsageCounters,
    UsageHeaderNames,
    parse_usage,
)

LOGGER = "motion_meta_cli.meta.usage"

# The reference's minimal examples (valid JSON, as sent by Meta).
APP_SAMPLE = '{"call_count":28,"total_time":25,"total_cputime":25}'
BUC_SAMPLE = (
    '{"66782684":[{"type":"ads_management","call_count":95,"total_cputime":20,"total_time":20,'
    '"estimated_time_to_regain_access":0,"ads_api_access_tier":"development_access"}]}'
)
AD_ACCOUNT_SAMPLE = '{"acc_id_util_pct":9.67,"reset_time_duration":100,"ads_api_access_tier":"standard_access"}'

# Shaped like Meta's rate-limiting page: `//` comments and a placeholder key make it invalid JSON.
BUC_DOCS_SAMPLE_WITH_COMMENTS = """{
    "{business-object-id}": [
      {
        "type": "{rate-limit-type}",                  //Type of BUC rate limit logic being applied.
        "call_count": 100,                            //Percentage of calls made.
        "total_cputime": 25,                          //Percentage of the total CPU time that has been used.
        "total_time": 25,                             //Percentage of the total time that has been used.
        "estimated_time_to_regain_access": 19,        //Time in minutes to regain access.
        "ads_api_access_tier": "standard_access"      //Tiers allows your app to access the Marketing API.
      }
    ],
    "66782684": [
      {
        "type": "ads_management",
        "call_count": 95,
        "total_cputime": 20,
        "total_time": 20,
        "estimated_time_to_regain_access": 0,
        "ads_api_access_tier": "development_access"
      }
    ]
}"""


def buc_entry(business_id: str, **fields: float | str | None) -> BusinessUseCaseUsage:
    values: dict[str, Any] = {
        "type": None,
        "call_count_pct": None,
        "total_cputime_pct": None,
        "total_time_pct": None,
        "eta_s": None,
        "access_tier": None,
    }
    values.update(fields)
    return BusinessUseCaseUsage(business_id=business_id, **values)


def warnings_from(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


# --- the documented samples -------------------------------------------------------------------------------


def test_reference_samples_parse_into_typed_values() -> None:
    usage = parse_usage(
        {
            "x-app-usage": APP_SAMPLE,
            "x-business-use-case-usage": BUC_SAMPLE,
            "x-ad-account-usage": AD_ACCOUNT_SAMPLE,
        }
    )

    assert usage == Usage(
        app=UsageCounters(call_count_pct=28.0, total_cputime_pct=25.0, total_time_pct=25.0),
        business_use_cases=(
            BusinessUseCaseUsage(
                business_id="66782684",
                type="ads_management",
                call_count_pct=95.0,
                total_cputime_pct=20.0,
                total_time_pct=20.0,
                eta_s=0.0,
                access_tier="development_access",
            ),
        ),
        ad_account=AdAccountUsage(util_pct=9.67, reset_s=100.0, access_tier="standard_access"),
    )
    assert usage.max_pct == 95.0
    assert usage.max_eta_s() is None
    assert not usage.is_empty


def test_page_and_insights_headers() -> None:
    usage = parse_usage(
        {
            "X-Page-Usage": '{"call_count":100,"total_cputime":3,"total_time":4}',
            "X-FB-Ads-Insights-Throttle": json.dumps(
                {"app_id_util_pct": 0.01, "acc_id_util_pct": 42, "ads_api_access_tier": "standard_access"}
            ),
        }
    )

    assert usage.page == UsageCounters(call_count_pct=100.0, total_cputime_pct=3.0, total_time_pct=4.0)
    assert usage.insights == InsightsThrottle(app_util_pct=0.01, account_util_pct=42.0)
    assert usage.app is None
    assert usage.max_pct == 100.0


# --- numbers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(30, 30.0, id="int"),
        pytest.param(75.5, 75.5, id="float"),
        pytest.param("30", 30.0, id="string-int"),
        pytest.param("75.5", 75.5, id="string-float"),
        pytest.param(" 12 ", 12.0, id="string-with-spaces"),
        pytest.param(0, 0.0, id="zero"),
        pytest.param(None, None, id="null"),
    ],
)
def test_numbers_arrive_as_ints_floats_or_strings(raw: object, expected: float | None) -> None:
    headers = {
        "X-App-Usage": json.dumps({"call_count": raw, "total_time": 1}),
        "X-Ad-Account-Usage": json.dumps({"acc_id_util_pct": raw, "reset_time_duration": 1}),
        "X-Business-Use-Case-Usage": json.dumps({"1": [{"type": "pages", "call_count": raw}]}),
        "X-FB-Ads-Insights-Throttle": json.dumps({"app_id_util_pct": raw, "acc_id_util_pct": 1}),
    }

    usage = parse_usage(headers)

    assert usage.app is not None and usage.app.call_count_pct == expected
    assert usage.ad_account is not None and usage.ad_account.util_pct == expected
    assert usage.business_use_cases[0].call_count_pct == expected
    assert usage.insights is not None and usage.insights.app_util_pct == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("lots", id="word"),
        pytest.param("", id="empty-string"),
        pytest.param(True, id="boolean"),
        pytest.param([30], id="list"),
        pytest.param({"value": 30}, id="object"),
        pytest.param("NaN", id="nan-string"),
        pytest.param("Infinity", id="infinity-string"),
    ],
)
def test_unparseable_number_drops_only_that_field_and_warns(raw: object, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)

    usage = parse_usage({"X-App-Usage": json.dumps({"call_count": raw, "total_time": 25})})

    assert usage.app == UsageCounters(call_count_pct=None, total_cputime_pct=None, total_time_pct=25.0)
    [warning] = warnings_from(caplog)
    assert "X-App-Usage" in warning
    assert "call_count" in warning


def test_json_nan_literal_is_not_a_number() -> None:
    # Python's json accepts the non-standard NaN literal; a NaN percentage would break every comparison.
    usage = parse_usage({"X-App-Usage": '{"call_count": NaN, "total_time": 5}'})

    assert usage.app == UsageCounters(total_time_pct=5.0)
    assert usage.max_pct == 5.0


def test_an_eta_whose_seconds_overflow_stays_a_finite_very_long_eta() -> None:
    # Found by the property tests: 3e306 minutes is a finite number, but 60 times it is not.
    header = '{"1": [{"type": "ads_management", "estimated_time_to_regain_access": 3e306}]}'
    usage = parse_usage({"X-Business-Use-Case-Usage": header})

    assert usage.max_eta_s() == sys.float_info.max


# --- keys -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        pytest.param(
            "X-App-Usage",
            '{"call_count":5,"total_time":6,"total_cputime":7,"call_volume":99,"cpu_time":98,"new_key":"x"}',
            Usage(app=UsageCounters(call_count_pct=5.0, total_cputime_pct=7.0, total_time_pct=6.0)),
            id="app-call_volume-cpu_time",
        ),
        pytest.param(
            "X-App-Usage",
            '{"call_count":5,"ads_api_access_tier":"standard_access"}',
            Usage(app=UsageCounters(call_count_pct=5.0)),
            id="app-ads_api_access_tier",
        ),
        pytest.param(
            "X-Business-Use-Case-Usage",
            '{"7":[{"type":"pages","call_count":1,"call_volume":50,"future":{"nested":true}}]}',
            Usage(business_use_cases=(buc_entry("7", type="pages", call_count_pct=1.0),)),
            id="buc-entry",
        ),
        pytest.param(
            "X-Ad-Account-Usage",
            '{"acc_id_util_pct":1,"something_new":[1,2]}',
            Usage(ad_account=AdAccountUsage(util_pct=1.0, reset_s=None, access_tier=None)),
            id="ad-account",
        ),
    ],
)
def test_unknown_keys_are_ignored_without_warning(
    header: str, value: str, expected: Usage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)

    assert parse_usage({header: value}) == expected
    assert warnings_from(caplog) == []


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        pytest.param(
            "X-Ad-Account-Usage",
            '{"acc_id_util_pct":9.67}',
            Usage(ad_account=AdAccountUsage(util_pct=9.67, reset_s=None, access_tier=None)),
            id="ad-account-only-util-pct",
        ),
        pytest.param(
            "X-Ad-Account-Usage",
            '{"reset_time_duration":300}',
            Usage(ad_account=AdAccountUsage(util_pct=None, reset_s=300.0, access_tier=None)),
            id="ad-account-only-reset",
        ),
        pytest.param(
            "X-App-Usage",
            '{"total_time":40}',
            Usage(app=UsageCounters(total_time_pct=40.0)),
            id="app-one-counter",
        ),
        pytest.param(
            "X-Business-Use-Case-Usage",
            '{"9":[{"call_count":3}]}',
            Usage(business_use_cases=(buc_entry("9", call_count_pct=3.0),)),
            id="buc-no-type",
        ),
        pytest.param(
            "X-FB-Ads-Insights-Throttle",
            '{"acc_id_util_pct":"100"}',
            Usage(insights=InsightsThrottle(app_util_pct=None, account_util_pct=100.0)),
            id="insights-account-only",
        ),
    ],
)
def test_missing_keys_leave_fields_none(header: str, value: str, expected: Usage) -> None:
    assert parse_usage({header: value}) == expected


@pytest.mark.parametrize(
    ("header", "value"),
    [
        pytest.param("X-App-Usage", "{}", id="app-empty-object"),
        pytest.param("X-App-Usage", '{"unknown":1}', id="app-only-unknown-keys"),
        pytest.param("X-Ad-Account-Usage", "{}", id="ad-account-empty-object"),
        pytest.param("X-FB-Ads-Insights-Throttle", "{}", id="insights-empty-object"),
        pytest.param("X-Business-Use-Case-Usage", "{}", id="buc-no-ids"),
        pytest.param("X-Business-Use-Case-Usage", '{"1":[]}', id="buc-id-without-entries"),
        pytest.param("X-Business-Use-Case-Usage", '{"1":[{}]}', id="buc-empty-entry"),
        pytest.param("X-Page-Usage", "", id="page-empty-value"),
        pytest.param("X-Page-Usage", "   ", id="page-blank-value"),
    ],
)
def test_headers_without_information_count_as_absent(header: str, value: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)

    usage = parse_usage({header: value})

    assert usage == EMPTY_USAGE
    assert usage.is_empty
    assert warnings_from(caplog) == []


def test_absent_headers_give_empty_usage_not_zero() -> None:
    usage = parse_usage({"Content-Type": "application/json", "X-FB-Trace-ID": "abc"})

    assert usage is not None
    assert usage == EMPTY_USAGE
    assert usage.is_empty
    assert usage.max_pct is None
    assert usage.max_eta_s() is None
    assert usage.app is None and usage.page is None and usage.ad_account is None and usage.insights is None
    assert usage.business_use_cases == ()


def test_no_headers_at_all() -> None:
    assert parse_usage({}) == EMPTY_USAGE


# --- business use cases -----------------------------------------------------------------------------------


def test_every_entry_of_every_business_id_is_read() -> None:
    header = json.dumps(
        {
            "111": [
                {"type": "ads_management", "call_count": 10, "estimated_time_to_regain_access": 0},
                {"type": "ads_insights", "call_count": 100, "estimated_time_to_regain_access": 19},
                {"type": "custom_audience", "total_time": 4},
            ],
            "act_222": [{"type": "ads_management", "total_cputime": "50"}],
            "page-333": [{"type": "pages", "call_count": 1, "estimated_time_to_regain_access": 47}],
        }
    )

    usage = parse_usage({"X-Business-Use-Case-Usage": header})

    assert usage.business_use_cases == (
        buc_entry("111", type="ads_management", call_count_pct=10.0, eta_s=0.0),
        buc_entry("111", type="ads_insights", call_count_pct=100.0, eta_s=19 * 60.0),
        buc_entry("111", type="custom_audience", total_time_pct=4.0),
        buc_entry("act_222", type="ads_management", total_cputime_pct=50.0),
        buc_entry("page-333", type="pages", call_count_pct=1.0, eta_s=47 * 60.0),
    )
    assert usage.max_pct == 100.0
    assert usage.max_eta_s() == 47 * 60.0


def test_thirty_two_ids_are_all_read() -> None:
    header = json.dumps({str(1000 + i): [{"type": "pages", "call_count": i}] for i in range(32)})

    usage = parse_usage({"X-Business-Use-Case-Usage": header})

    assert [entry.business_id for entry in usage.business_use_cases] == [str(1000 + i) for i in range(32)]
    assert usage.max_pct == 31.0


@pytest.mark.parametrize(
    ("eta_raw", "expected_eta_s", "expected_max_eta_s"),
    [
        pytest.param(0, 0.0, None, id="zero-is-not-blocked"),
        pytest.param(19, 1140.0, 1140.0, id="minutes-to-seconds"),
        pytest.param("47", 2820.0, 2820.0, id="string-minutes"),
        pytest.param(0.5, 30.0, 30.0, id="fraction-of-a-minute"),
        pytest.param(None, None, None, id="missing"),
    ],
)
def test_estimated_time_to_regain_access_is_minutes(
    eta_raw: object, expected_eta_s: float | None, expected_max_eta_s: float | None
) -> None:
    header = json.dumps({"1": [{"type": "ads_management", "estimated_time_to_regain_access": eta_raw}]})

    usage = parse_usage({"X-Business-Use-Case-Usage": header})

    [entry] = usage.business_use_cases
    assert entry.eta_s == expected_eta_s
    assert usage.max_eta_s() == expected_max_eta_s


def test_max_eta_s_ignores_ad_account_reset_and_zero_etas() -> None:
    usage = parse_usage(
        {
            "X-Business-Use-Case-Usage": json.dumps(
                {
                    "1": [{"type": "a", "estimated_time_to_regain_access": 0}],
                    "2": [{"type": "b", "estimated_time_to_regain_access": 2}],
                }
            ),
            "X-Ad-Account-Usage": '{"reset_time_duration": 3600}',
        }
    )

    assert usage.max_eta_s() == 120.0


@pytest.mark.parametrize(
    ("value", "expected_seconds"),
    [
        pytest.param('{"reset_time_duration":100}', 100.0, id="int"),
        pytest.param('{"reset_time_duration":"60"}', 60.0, id="string"),
        pytest.param('{"reset_time_duration":0}', 0.0, id="zero"),
    ],
)
def test_reset_time_duration_is_already_seconds(value: str, expected_seconds: float) -> None:
    usage = parse_usage({"X-Ad-Account-Usage": value})

    assert usage.ad_account is not None
    assert usage.ad_account.reset_s == expected_seconds


def test_malformed_buc_entries_are_skipped_and_the_rest_kept(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    header = json.dumps(
        {
            "1": [{"type": "pages", "call_count": 5}, "oops", 7, None, ["nested"]],
            "2": {"type": "ads_management", "call_count": 6},
            "3": "not a list",
            "4": [{"type": "instagram", "call_count": 8}],
        }
    )

    usage = parse_usage({"X-Business-Use-Case-Usage": header})

    assert usage.business_use_cases == (
        buc_entry("1", type="pages", call_count_pct=5.0),
        buc_entry("4", type="instagram", call_count_pct=8.0),
    )
    # One warning for the whole header, however many entries were bad.
    [warning] = warnings_from(caplog)
    assert "X-Business-Use-Case-Usage" in warning


def test_buc_text_fields_of_the_wrong_type_become_none(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    header = json.dumps({"1": [{"type": 5, "call_count": 5, "ads_api_access_tier": ["x"]}]})

    usage = parse_usage({"X-Business-Use-Case-Usage": header})

    assert usage.business_use_cases == (buc_entry("1", call_count_pct=5.0),)
    assert len(warnings_from(caplog)) == 1


def test_business_id_is_kept_as_an_opaque_string() -> None:
    header = json.dumps({"act_0012": [{"type": "ads_management", "call_count": 1}]})

    [entry] = parse_usage({"X-Business-Use-Case-Usage": header}).business_use_cases

    assert entry.business_id == "act_0012"


# --- invalid JSON and wrong shapes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "X-App-Usage",
        "X-Page-Usage",
        "X-Business-Use-Case-Usage",
        "X-Ad-Account-Usage",
        "X-FB-Ads-Insights-Throttle",
    ],
)
@pytest.mark.parametrize(
    "value",
    [
        pytest.param("{call_count: 5", id="invalid-json"),
        pytest.param("{'call_count': 5}", id="single-quotes"),
        pytest.param("28", id="number"),
        pytest.param('"28"', id="string"),
        pytest.param("null", id="null"),
        pytest.param("true", id="boolean"),
        pytest.param('[{"call_count": 5}]', id="list-instead-of-object"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="nested-too-deep"),
    ],
)
def test_unreadable_header_is_logged_once_and_treated_as_absent(
    header: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)

    usage = parse_usage({header: value})

    assert usage == EMPTY_USAGE
    [warning] = warnings_from(caplog)
    assert header in warning


def test_a_bad_header_does_not_hide_the_good_ones(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)

    usage = parse_usage(
        {
            "X-App-Usage": "not json",
            "X-Business-Use-Case-Usage": BUC_SAMPLE,
            "X-Ad-Account-Usage": "[]",
        }
    )

    assert usage.app is None
    assert usage.ad_account is None
    assert usage.business_use_cases[0].call_count_pct == 95.0
    warnings = warnings_from(caplog)
    assert len(warnings) == 2
    assert any("X-App-Usage" in w for w in warnings)
    assert any("X-Ad-Account-Usage" in w for w in warnings)


def test_docs_sample_with_comments_does_not_crash(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)

    usage = parse_usage({"X-Business-Use-Case-Usage": BUC_DOCS_SAMPLE_WITH_COMMENTS, "X-App-Usage": APP_SAMPLE})

    assert usage.business_use_cases == ()
    assert usage.app is not None and usage.app.call_count_pct == 28.0
    [warning] = warnings_from(caplog)
    assert "X-Business-Use-Case-Usage" in warning
    assert "not valid JSON" in warning


def test_warning_never_quotes_a_long_value_in_full(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    long_value = "{" + "x" * 5000

    parse_usage({"X-App-Usage": long_value})

    [warning] = warnings_from(caplog)
    assert long_value not in warning
    assert len(warning) < 400


def test_warning_for_many_bad_entries_stays_short(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    header = json.dumps({str(i): ["bad"] for i in range(32)})

    parse_usage({"X-Business-Use-Case-Usage": header})

    [warning] = warnings_from(caplog)
    assert "27 more" in warning
    assert len(warning) < 700


# --- header names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["X-App-Usage", "x-app-usage", "X-APP-USAGE", "x-App-usage"],
)
@pytest.mark.parametrize("mapping_type", [dict, CaseInsensitiveDict], ids=["dict", "CaseInsensitiveDict"])
def test_header_names_match_in_any_casing(name: str, mapping_type: type[Any]) -> None:
    headers = mapping_type({name: APP_SAMPLE, "X-AD-ACCOUNT-USAGE": AD_ACCOUNT_SAMPLE})

    usage = parse_usage(headers)

    assert usage.app is not None and usage.app.call_count_pct == 28.0
    assert usage.ad_account is not None and usage.ad_account.util_pct == 9.67


def test_custom_header_names() -> None:
    names = UsageHeaderNames(
        app="X-My-App",
        business_use_case="x-my-buc",
        ad_account="X-My-Account",
        insights="X-My-Insights",
        page="X-My-Page",
    )
    headers = {
        "x-my-app": APP_SAMPLE,
        "X-MY-BUC": BUC_SAMPLE,
        "X-My-Account": AD_ACCOUNT_SAMPLE,
        "X-My-Insights": '{"app_id_util_pct":1}',
        "X-My-Page": '{"call_count":2}',
        # The default names are no longer read.
        "X-App-Usage": '{"call_count":99}',
        "X-Page-Usage": '{"call_count":99}',
    }

    usage = parse_usage(headers, names)

    assert usage.app == UsageCounters(call_count_pct=28.0, total_cputime_pct=25.0, total_time_pct=25.0)
    assert usage.page == UsageCounters(call_count_pct=2.0)
    assert usage.business_use_cases[0].business_id == "66782684"
    assert usage.ad_account is not None and usage.ad_account.util_pct == 9.67
    assert usage.insights == InsightsThrottle(app_util_pct=1.0, account_util_pct=None)


def test_default_header_names() -> None:
    assert UsageHeaderNames() == UsageHeaderNames(
        app="X-App-Usage",
        business_use_case="X-Business-Use-Case-Usage",
        ad_account="X-Ad-Account-Usage",
        insights="X-FB-Ads-Insights-Throttle",
        page="X-Page-Usage",
    )


# --- derived values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counters", "expected"),
    [
        pytest.param(UsageCounters(), None, id="none-present"),
        pytest.param(UsageCounters(call_count_pct=5.0), 5.0, id="one"),
        pytest.param(UsageCounters(1.0, 100.0, 3.0), 100.0, id="cputime-highest"),
        pytest.param(UsageCounters(1.0, None, 30.0), 30.0, id="time-highest-one-missing"),
        pytest.param(UsageCounters(0.0, None, None), 0.0, id="zero-is-a-value"),
    ],
)
def test_counters_max_pct(counters: UsageCounters, expected: float | None) -> None:
    assert counters.max_pct == expected


def test_buc_entry_max_pct() -> None:
    assert buc_entry("1", call_count_pct=3.0, total_time_pct=70.0).max_pct == 70.0
    assert buc_entry("1", eta_s=60.0).max_pct is None


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param(Usage(), None, id="empty"),
        pytest.param(Usage(app=UsageCounters(total_time_pct=12.0)), 12.0, id="app"),
        pytest.param(Usage(page=UsageCounters(call_count_pct=13.0)), 13.0, id="page"),
        pytest.param(
            Usage(business_use_cases=(buc_entry("1", call_count_pct=5.0), buc_entry("2", total_time_pct=88.0))),
            88.0,
            id="buc-second-entry",
        ),
        pytest.param(Usage(ad_account=AdAccountUsage(77.5, 10.0, None)), 77.5, id="ad-account"),
        pytest.param(Usage(insights=InsightsThrottle(None, 91.0)), 91.0, id="insights-account"),
        pytest.param(
            Usage(
                app=UsageCounters(call_count_pct=50.0),
                ad_account=AdAccountUsage(60.0, None, None),
                insights=InsightsThrottle(70.0, None),
            ),
            70.0,
            id="highest-anywhere",
        ),
        pytest.param(Usage(ad_account=AdAccountUsage(None, 100.0, None)), None, id="reset-is-not-a-percentage"),
    ],
)
def test_usage_max_pct(usage: Usage, expected: float | None) -> None:
    assert usage.max_pct == expected


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param(Usage(), True, id="default"),
        pytest.param(EMPTY_USAGE, True, id="constant"),
        pytest.param(Usage(app=UsageCounters(call_count_pct=0.0)), False, id="zero-usage-is-information"),
        pytest.param(Usage(business_use_cases=(buc_entry("1", eta_s=0.0),)), False, id="buc"),
        pytest.param(Usage(insights=InsightsThrottle(None, 1.0)), False, id="insights"),
    ],
)
def test_usage_is_empty(usage: Usage, expected: bool) -> None:
    assert usage.is_empty is expected
