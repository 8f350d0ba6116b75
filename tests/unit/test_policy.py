from __future__ import annotations

import pytest

from motion_meta_cli.config import MetaPlatformConfig
from motion_meta_cli.meta import Classification, ErrorKind, ScopeKind, ThrottleScope
from motion_meta_cli.policy import GiveUp, RetryAfter, RetryPolicy


def _config(**retry: float) -> MetaPlatformConfig:
    return MetaPlatformConfig().merged({"retry": retry, "throttle": {"pause_floor_s": 10, "pause_cap_s": 100}})


def _cls(kind: ErrorKind, eta_s: float | None = None) -> Classification:
    scope = ThrottleScope(ScopeKind.APP) if kind is ErrorKind.THROTTLED else None
    return Classification(kind=kind, http_status=400, reason="why", scope=scope, eta_s=eta_s)


def test_backoff_doubles_up_to_the_cap_without_jitter() -> None:
    policy = RetryPolicy(_config(backoff_base_s=0.5, backoff_cap_s=3, jitter_ratio=0), random=lambda: 0.7)
    assert [policy.backoff_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_only_shortens_within_the_ratio() -> None:
    low = RetryPolicy(_config(backoff_base_s=1, jitter_ratio=0.5), random=lambda: 1.0)
    high = RetryPolicy(_config(backoff_base_s=1, jitter_ratio=0.5), random=lambda: 0.0)
    assert low.backoff_s(3) == pytest.approx(2.0)
    assert high.backoff_s(3) == pytest.approx(4.0)


def test_decide_retries_transient_until_attempts_run_out() -> None:
    policy = RetryPolicy(_config(max_attempts=3, jitter_ratio=0))
    assert policy.decide(_cls(ErrorKind.TRANSIENT), failures=1) == RetryAfter(0.5, "why")
    assert isinstance(policy.decide(_cls(ErrorKind.TRANSIENT), failures=3), GiveUp)


@pytest.mark.parametrize(
    "kind",
    [
        ErrorKind.AUTH,
        ErrorKind.PERMISSION,
        ErrorKind.POLICY_BLOCK,
        ErrorKind.INVALID_REQUEST,
        ErrorKind.UNKNOWN,
    ],
)
def test_decide_never_retries_what_retrying_cannot_fix(kind: ErrorKind) -> None:
    assert isinstance(RetryPolicy(_config()).decide(_cls(kind), failures=1), GiveUp)
