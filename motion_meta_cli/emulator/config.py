"""What an emulator does: its limits, its users, its latency and the faults it injects."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from motion_meta_cli.emulator.users import UserDirectory, default_directory

_BUC_TIERED_TYPES = frozenset({"ads_insights", "ads_management"})
"""BUC types whose header entries carry `ads_api_access_tier` (reference §1)."""
RATE_SUM_SLACK = 1e-9
"""Float noise allowed when exclusive fault rates add up to 1 (0.1 + 0.2 + 0.7 is not quite 1.0)."""


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How the emulator behaves; each field has a `motion-meta emulator` flag (`token_limit`: `--token-limit`,
    `fault_500_rate`: `--fault-500`, `users`: `--users FILE`).

    >>> EmulatorConfig(app_limit=200, token_limit=20, buc_limit=50, time_scale=1 / 60, seed=7)  # doctest: +ELLIPSIS
    EmulatorConfig(app_limit=200, ...)

    Limits are calls per rolling `window_s`; None means unlimited. A call refused by one scope still counts
    against every scope it touches, as Meta counts calls made while throttled. Scopes are checked in the order
    app (code 4), page (32), token (17), business use case (80004); the token and business-use-case scopes
    count only calls whose token belongs to a user, so a call with a bad token is answered 190 unless the app
    or page limit refuses it first.

    Fault rates are probabilities drawn per Graph request (with a seed, from the seed, the token and how many
    requests that token made before: see `faults`). The four that replace
    the answer (500, transient, html, drop) are exclusive and must add up to at most 1; so must the two that
    garble usage headers (malformed usage, string numbers). Faulted requests count against the limits.
    """

    app_limit: int | None = None
    """Calls per rolling window for the whole app; None means unlimited (and no X-App-Usage header)."""
    window_s: float = 3600.0
    """Length of the rolling window every limit counts over."""
    users: UserDirectory = field(default_factory=default_directory)
    latency_s: float = 0.0
    """Delay added to every Graph request, to make requests overlap the way real network calls do."""
    latency_jitter_s: float = 0.0
    """A uniformly random extra delay of up to this much, drawn per request."""
    token_limit: int | None = None
    """Calls per rolling window for each token (Meta's hidden per-user limit, code 17); no header shows it."""
    page_limit: int | None = None
    """Calls per rolling window for the app's page traffic (code 32); every /me call counts. No header."""
    buc_limit: int | None = None
    """Calls per rolling window for the business use case (code 80004 / 2446079, X-Business-Use-Case-Usage)."""
    buc_business_id: str = "1234567890"
    """The id keying the X-Business-Use-Case-Usage header."""
    buc_type: str = "ads_management"
    """The business use case `type` in the header."""
    buc_block_minutes: float = 1.0
    """Shortest business-use-case block, in emulated minutes (see `time_scale`)."""
    time_scale: float = 1.0
    """Real seconds per emulated second: one emulated minute lasts `60 * time_scale` s (1/60 → 1 s)."""
    fault_500_rate: float = 0.0
    """Share of requests answered HTTP 500, code 1 / 99 "An unknown error occurred"."""
    fault_transient_rate: float = 0.0
    """Share of requests answered HTTP 400, code 2 "(#2) Service temporarily unavailable"."""
    fault_html_rate: float = 0.0
    """Share of requests answered HTTP 502 with an HTML "Facebook | Error" page."""
    fault_drop_rate: float = 0.0
    """Share of requests whose connection is closed without any response."""
    fault_malformed_usage_rate: float = 0.0
    """Share of responses whose usage headers are not valid JSON (status and body unchanged)."""
    fault_string_numbers_rate: float = 0.0
    """Share of responses whose usage headers carry numbers as strings, e.g. "call_count":"30"."""
    fault_slow_rate: float = 0.0
    """Share of requests answered `slow_s` late (on top of the latency), whatever else they get."""
    slow_s: float = 3.0
    """How late a slow answer is."""
    seed: int | None = None
    """Seed for fault and jitter draws, for reproducible runs; None draws from the OS."""

    def __post_init__(self) -> None:
        for name in ("app_limit", "token_limit", "page_limit", "buc_limit"):
            limit = getattr(self, name)
            if limit is not None and limit < 1:
                raise ValueError(f"{name} must be at least 1 or None for unlimited, got {limit}")
        _check(self.window_s > 0, "window_s must be positive", self.window_s)
        _check(self.time_scale > 0, "time_scale must be positive", self.time_scale)
        for name in ("latency_s", "latency_jitter_s", "buc_block_minutes", "slow_s"):
            _check(getattr(self, name) >= 0, f"{name} must not be negative", getattr(self, name))
        for name in ("buc_business_id", "buc_type"):
            if not getattr(self, name).strip():
                raise ValueError(f"{name} must not be empty")
        for item in fields(self):
            if item.name.startswith("fault_"):
                rate = getattr(self, item.name)
                _check(0 <= rate <= 1, f"{item.name} must be between 0 and 1", rate)
        if sum(self.response_fault_rates.values()) > 1 + RATE_SUM_SLACK:
            raise ValueError("fault_500_rate + fault_transient_rate + fault_html_rate + fault_drop_rate exceed 1")
        if sum(self.header_fault_rates.values()) > 1 + RATE_SUM_SLACK:
            raise ValueError("fault_malformed_usage_rate + fault_string_numbers_rate exceed 1")

    @property
    def minute_s(self) -> float:
        """Real seconds in one emulated minute."""
        return 60.0 * self.time_scale

    @property
    def buc_block_s(self) -> float:
        """Shortest business-use-case block in real seconds."""
        return self.buc_block_minutes * self.minute_s

    @property
    def buc_access_tier(self) -> str | None:
        """`ads_api_access_tier` for the header entry; only ads_insights and ads_management carry one."""
        return "development_access" if self.buc_type in _BUC_TIERED_TYPES else None

    @property
    def response_fault_rates(self) -> dict[str, float]:
        """Rates of the faults that replace the answer, by fault name; they are exclusive."""
        return {
            "500": self.fault_500_rate,
            "transient": self.fault_transient_rate,
            "html": self.fault_html_rate,
            "dropped": self.fault_drop_rate,
        }

    @property
    def header_fault_rates(self) -> dict[str, float]:
        """Rates of the faults that garble usage headers, by fault name; they are exclusive."""
        return {"malformed_usage": self.fault_malformed_usage_rate, "string_numbers": self.fault_string_numbers_rate}

    def summary(self) -> str:
        """One line naming what is configured, e.g. "2 calls per 30 s; token limit 5; faults: 500 10%"."""
        parts = [f"{self.app_limit} calls per {self.window_s:g} s" if self.app_limit else "no app limit"]
        if self.page_limit:
            parts.append(f"page limit {self.page_limit}")
        if self.token_limit:
            parts.append(f"token limit {self.token_limit}")
        if self.buc_limit:
            parts.append(
                f"business use case limit {self.buc_limit} ({self.buc_type}, blocks of at least"
                f" {self.buc_block_minutes:g} min of {self.minute_s:g} s)"
            )
        faults = [
            f"{name} {rate * 100:g}%"
            for name, rate in (self.response_fault_rates | self.header_fault_rates).items()
            if rate
        ]
        if self.fault_slow_rate:
            faults.append(f"slow {self.fault_slow_rate * 100:g}% ({self.slow_s:g} s)")
        if faults:
            parts.append("faults: " + ", ".join(faults))
        if self.latency_s or self.latency_jitter_s:
            parts.append(f"latency {self.latency_s:g} s + up to {self.latency_jitter_s:g} s")
        return "; ".join(parts)


def _check(ok: bool, message: str, value: float) -> None:
    if not ok:  # written this way so NaN fails too
        raise ValueError(f"{message}, got {value}")
