"""EmulatorConfig: validation of every knob, and the one-line summary the command prints."""

from __future__ import annotations

import dataclasses

import pytest

from motion_meta_cli.emulator import EmulatorConfig


def test_defaults_turn_everything_off() -> None:
    config = EmulatorConfig()

    assert (config.app_limit, config.token_limit, config.page_limit, config.buc_limit) == (None, None, None, None)
    assert config.response_fault_rates == {"500": 0.0, "transient": 0.0, "html": 0.0, "dropped": 0.0}
    assert config.summary() == "no app limit"


def test_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        EmulatorConfig().app_limit = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"token_limit": 0}, "token_limit must be at least 1"),
        ({"page_limit": -1}, "page_limit must be at least 1"),
        ({"buc_limit": 0}, "buc_limit must be at least 1"),
        ({"window_s": 0.0}, "window_s must be positive"),
        ({"time_scale": 0.0}, "time_scale must be positive"),
        ({"time_scale": float("nan")}, "time_scale must be positive"),
        ({"latency_jitter_s": -0.1}, "latency_jitter_s must not be negative"),
        ({"buc_block_minutes": -1.0}, "buc_block_minutes must not be negative"),
        ({"buc_business_id": " "}, "buc_business_id must not be empty"),
        ({"buc_type": ""}, "buc_type must not be empty"),
        ({"fault_500_rate": 1.5}, "fault_500_rate must be between 0 and 1"),
        ({"fault_drop_rate": -0.1}, "fault_drop_rate must be between 0 and 1"),
        ({"fault_string_numbers_rate": float("nan")}, "fault_string_numbers_rate must be between 0 and 1"),
        ({"fault_500_rate": 0.6, "fault_html_rate": 0.5}, "exceed 1"),
        ({"fault_malformed_usage_rate": 0.6, "fault_string_numbers_rate": 0.5}, "exceed 1"),
    ],
)
def test_rejects_nonsense(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EmulatorConfig(**settings)  # type: ignore[arg-type]


def test_exclusive_rates_may_add_up_to_one_despite_float_noise() -> None:
    config = EmulatorConfig(fault_500_rate=0.1, fault_transient_rate=0.2, fault_html_rate=0.3, fault_drop_rate=0.4)

    assert sum(config.response_fault_rates.values()) == pytest.approx(1.0)


def test_time_scale_sets_the_minute() -> None:
    config = EmulatorConfig(time_scale=1 / 60, buc_block_minutes=3.0)

    assert config.minute_s == pytest.approx(1.0)
    assert config.buc_block_s == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("buc_type", "tier"),
    [("ads_management", "development_access"), ("ads_insights", "development_access"), ("pages", None)],
)
def test_only_ads_types_carry_an_access_tier(buc_type: str, tier: str | None) -> None:
    assert EmulatorConfig(buc_type=buc_type).buc_access_tier == tier


def test_summary_names_what_is_configured() -> None:
    config = EmulatorConfig(
        app_limit=2,
        window_s=30.0,
        page_limit=5,
        token_limit=3,
        buc_limit=4,
        time_scale=1 / 60,
        fault_500_rate=0.1,
        fault_drop_rate=0.005,
        latency_s=0.01,
    )

    assert config.summary() == (
        "2 calls per 30 s; page limit 5; token limit 3; business use case limit 4 (ads_management, blocks of at "
        "least 1 min of 1 s); faults: 500 10%, dropped 0.5%; latency 0.01 s + up to 0 s"
    )
    assert config.summary().isascii()
