"""Seeded fault draws and the usage headers they garble."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from motion_meta_cli.emulator import EmulatorConfig, Fault, FaultInjector
from motion_meta_cli.emulator.scopes import BusinessUseCaseUsage
from motion_meta_cli.emulator.usage_headers import app_usage, business_use_case_usage, render


def draws(config: EmulatorConfig, n: int) -> list[tuple[Fault | None, Fault | None]]:
    injector = FaultInjector(config)
    return [(d.response, d.headers) for d in (injector.draw() for _ in range(n))]


class TestFaultInjector:
    @pytest.mark.parametrize(
        ("field", "fault"),
        [
            ("fault_500_rate", Fault.SERVER_ERROR),
            ("fault_transient_rate", Fault.TRANSIENT),
            ("fault_html_rate", Fault.HTML),
            ("fault_drop_rate", Fault.DROPPED),
        ],
    )
    def test_rate_one_always_faults_the_response(self, field: str, fault: Fault) -> None:
        assert draws(EmulatorConfig(**{field: 1.0}), 50) == [(fault, None)] * 50  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("field", "fault"),
        [("fault_malformed_usage_rate", Fault.MALFORMED_USAGE), ("fault_string_numbers_rate", Fault.STRING_NUMBERS)],
    )
    def test_rate_one_always_garbles_the_headers(self, field: str, fault: Fault) -> None:
        assert draws(EmulatorConfig(**{field: 1.0}), 50) == [(None, fault)] * 50  # type: ignore[arg-type]

    def test_rate_zero_never_faults_and_draws_nothing(self) -> None:
        injector = FaultInjector(EmulatorConfig(seed=1))

        assert not injector.active
        assert {(d.response, d.headers, d.extra_latency_s) for d in (injector.draw() for _ in range(100))} == {
            (None, None, 0.0)
        }

    def test_the_same_seed_gives_the_same_mix(self) -> None:
        config = EmulatorConfig(fault_500_rate=0.5, fault_string_numbers_rate=0.5, seed=42)

        first, second = draws(config, 200), draws(config, 200)

        assert first == second
        counts = Counter(response for response, _ in first)
        assert 70 < counts[Fault.SERVER_ERROR] < 130
        assert draws(EmulatorConfig(fault_500_rate=0.5, fault_string_numbers_rate=0.5, seed=43), 200) != first

    def test_exclusive_faults_split_the_draw(self) -> None:
        config = EmulatorConfig(fault_500_rate=0.25, fault_transient_rate=0.25, fault_drop_rate=0.5, seed=3)

        counts = Counter(response for response, _ in draws(config, 4000))

        assert None not in counts  # the rates add up to 1: every request faults, once
        assert counts[Fault.DROPPED] == pytest.approx(2000, rel=0.1)
        assert counts[Fault.SERVER_ERROR] == pytest.approx(1000, rel=0.15)

    def test_jitter_is_uniform_within_bounds_and_seeded(self) -> None:
        config = EmulatorConfig(latency_jitter_s=0.2, seed=9)

        first, second = FaultInjector(config), FaultInjector(config)

        delays = [first.draw().extra_latency_s for _ in range(500)]
        again = [second.draw().extra_latency_s for _ in range(500)]

        assert delays == again
        assert all(0.0 <= delay <= 0.2 for delay in delays)
        assert max(delays) > 0.15 and min(delays) < 0.05


class TestUsageHeaders:
    def test_app_usage_is_compact_json(self) -> None:
        assert render(app_usage(40)) == '{"call_count":40,"total_cputime":10,"total_time":20}'

    def test_business_use_case_usage_has_meta_shape(self) -> None:
        config = EmulatorConfig(buc_business_id="66782684", buc_type="ads_management")

        value = json.loads(render(business_use_case_usage(config, BusinessUseCaseUsage(95, 3))))

        assert value == {
            "66782684": [
                {
                    "type": "ads_management",
                    "call_count": 95,
                    "total_cputime": 23,
                    "total_time": 47,
                    "estimated_time_to_regain_access": 3,
                    "ads_api_access_tier": "development_access",
                }
            ]
        }

    def test_other_types_carry_no_access_tier(self) -> None:
        value = business_use_case_usage(EmulatorConfig(buc_type="pages"), BusinessUseCaseUsage(1, 0))

        assert "ads_api_access_tier" not in value["1234567890"][0]

    def test_string_numbers_quote_every_number(self) -> None:
        config = EmulatorConfig()

        app = json.loads(render(app_usage(30), Fault.STRING_NUMBERS))
        business = json.loads(
            render(business_use_case_usage(config, BusinessUseCaseUsage(30, 2)), Fault.STRING_NUMBERS)
        )

        assert app == {"call_count": "30", "total_cputime": "7", "total_time": "15"}
        entry = business["1234567890"][0]
        assert (entry["call_count"], entry["estimated_time_to_regain_access"]) == ("30", "2")
        assert entry["type"] == "ads_management"

    def test_malformed_usage_is_not_json(self) -> None:
        with pytest.raises(json.JSONDecodeError):
            json.loads(render(app_usage(30), Fault.MALFORMED_USAGE))


def test_slow_answers_come_at_their_rate_on_top_of_any_other_fault() -> None:
    injector = FaultInjector(EmulatorConfig(fault_slow_rate=0.25, slow_s=3.0, fault_500_rate=0.5, seed=7))
    draws = [injector.draw() for _ in range(4000)]
    slow = [draw for draw in draws if draw.slow]
    assert 0.22 < len(slow) / len(draws) < 0.28
    assert all(draw.extra_latency_s == 3.0 for draw in slow)
    assert all(draw.extra_latency_s == 0.0 for draw in draws if not draw.slow)
    assert any(draw.response is Fault.SERVER_ERROR for draw in slow), "slow is independent of the answer's fault"


def test_with_a_seed_each_caller_meets_the_same_faults_however_callers_interleave() -> None:
    config = EmulatorConfig(fault_500_rate=0.3, fault_html_rate=0.2, latency_jitter_s=0.1, seed=5)
    first, second = FaultInjector(config), FaultInjector(config)
    alone = [first.draw("EAAone") for _ in range(50)]
    interleaved = []
    for _ in range(50):
        second.draw("EAAother")
        interleaved.append(second.draw("EAAone"))
    assert interleaved == alone
    assert alone != [first.draw("EAAother") for _ in range(50)], "another caller meets other faults"
