"""`ModerationState` on Redis: every operation is one Lua script, atomic, timed by Redis's own clock."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from motion_meta_cli.moderation.state import AdmitRule, Hold
from motion_meta_cli.storage.redis_cache import RedisCache

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function touch(key, ms)
  local left = redis.call('PTTL', key)
  if left < ms then redis.call('PEXPIRE', key, math.floor(ms)) end
end
"""

_HOLD = (
    _NOW
    + """
local best, which, recovering, known = 0, '', {}, 0
for i, key in ipairs(KEYS) do
  local h = redis.call('HMGET', key, 'until', 'recovering', 'capacity', 'capacity_until')
  local left = tonumber(h[1] or 0) - now
  if left > best then best = left; which = ARGV[i] end
  if h[2] == '1' then table.insert(recovering, ARGV[i]) end
  if i == 1 and h[3] and tonumber(h[4] or 0) > now then known = 1 end
end
return {math.floor(best), which, table.concat(recovering, '\\n'), known}
"""
)

_ADMIT = (
    _NOW
    + """
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[2])
local h = redis.call('HMGET', KEYS[1], 'capacity', 'capacity_until', 'limited_until', 'precise')
local cap = nil
if h[1] and tonumber(h[2] or 0) > now then cap = tonumber(h[1]) end
local limited = tonumber(h[3] or 0) > now
local wait = 0
if cap ~= nil and cap ~= 0 and (ARGV[2] == '1' or limited) then
  if n >= cap then
    local e = redis.call('ZRANGE', KEYS[2], n - cap, n - cap, 'WITHSCORES')
    wait = math.max(1, tonumber(e[2]) + window - now)
  elseif h[4] ~= '1' and n > 0 and n >= math.floor(cap * tonumber(ARGV[3]) / 100) then
    local e = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
    wait = math.max(0, tonumber(e[2]) + math.floor(window / cap) - now)
  end
end
if wait == 0 and ARGV[4] == '1' then
  redis.call('ZADD', KEYS[2], now, now .. ':' .. ARGV[5])
  redis.call('PEXPIRE', KEYS[2], window * 2)
end
return {math.floor(wait), now}
"""
)

_OBSERVE_SUCCESS = (
    _NOW
    + """
local sent, window, margin = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('HDEL', KEYS[1], 'strikes', 'started', 'recovering')
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 2 * window)
local low = sent - window + margin
local n = 0
if ARGV[5] == '1' then
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], low, sent)) do
    if tonumber(string.match(member, '^(%d+)')) > low then n = n + 1 end
  end
end
redis.call('ZADD', KEYS[2], now, ARGV[1] .. ':' .. ARGV[4])
redis.call('PEXPIRE', KEYS[2], window * 2)
return n
"""
)

_RAISE_CAPACITY = (
    _NOW
    + """
local h = redis.call('HMGET', KEYS[1], 'capacity', 'capacity_until', 'precise')
local current = nil
if h[1] and tonumber(h[2] or 0) > now then current = tonumber(h[1]) end
local new, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local merged
if new == 0 then merged = current or 0
elseif current == nil or current == 0 then merged = new
else merged = math.max(current, new) end
local precise = '0'
if new ~= 0 and (ARGV[3] == '1' or (h[3] == '1' and current ~= nil)) then precise = '1' end
local until_ms = math.max(tonumber(h[2] or 0), now + ttl)
redis.call('HSET', KEYS[1], 'capacity', merged, 'capacity_until', until_ms, 'precise', precise)
touch(KEYS[1], until_ms - now)
return merged
"""
)

_STRIKE = (
    _NOW
    + """
local started = tonumber(redis.call('HGET', KEYS[1], 'started') or '-1')
local new = 0
if tonumber(ARGV[1]) > started then
  redis.call('HINCRBY', KEYS[1], 'strikes', 1)
  redis.call('HSET', KEYS[1], 'started', now)
  new = 1
end
touch(KEYS[1], tonumber(ARGV[2]))
return {math.max(tonumber(redis.call('HGET', KEYS[1], 'strikes') or '1'), 1), new}
"""
)

_PAUSE = (
    _NOW
    + """
local duration, limited, relearn = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4])
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'recovering', '1') end
local h = redis.call('HMGET', KEYS[1], 'limited_until', 'capacity_until', 'until', 'capacity')
redis.call('HSET', KEYS[1], 'limited_until', math.max(tonumber(h[1] or 0), now + limited))
local learned = tonumber(h[4] or 0) > 0 and tonumber(h[2] or 0) > now
if relearn > 0 and learned then
  local n = 0
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now - relearn, '+inf')) do
    if tonumber(string.match(member, '^(%d+)')) > now - relearn then n = n + 1 end
  end
  if n > 0 then
    local until_ms = math.max(tonumber(h[2] or 0), now + limited)
    redis.call('HSET', KEYS[1], 'capacity', n, 'precise', '1', 'capacity_until', until_ms)
  end
end
local extended = 0
if now + duration > tonumber(h[3] or 0) then
  redis.call('HSET', KEYS[1], 'until', now + duration)
  extended = 1
end
touch(KEYS[1], math.max(limited, duration) + 60000)
return extended
"""
)

_END_PROBE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_ACQUIRE_SLOT = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
touch(KEYS[1], tonumber(ARGV[2]) * 2)
return 1
"""
)

_COOLDOWNS = (
    _NOW
    + """
local out = {}
for i, key in ipairs(KEYS) do
  local left = tonumber(redis.call('HGET', key, 'until') or 0) - now
  if left > 0 then table.insert(out, ARGV[i]); table.insert(out, math.floor(left)) end
end
return out
"""
)


class RedisState:
    """Moderation shared by every instance using one Redis, keys under the cache's prefix.

    Per scope: a hash `mod:<scope>` (cooldown, strikes, recovery, capacity), sorted sets
    `modlog:<scope>` (our sends) and `modok:<scope>` (our successes), and `modprobe:<scope>`.
    """

    def __init__(self, cache: RedisCache) -> None:
        self._cache = cache
        client = cache.client
        self._p = cache.prefix
        self._scripts = {
            name: client.register_script(source)
            for name, source in {
                "hold": _HOLD,
                "admit": _ADMIT,
                "observe": _OBSERVE_SUCCESS,
                "raise": _RAISE_CAPACITY,
                "strike": _STRIKE,
                "pause": _PAUSE,
                "end_probe": _END_PROBE,
                "slot": _ACQUIRE_SLOT,
                "cooldowns": _COOLDOWNS,
            }.items()
        }

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        with self._cache.errors():
            return self._scripts[name](keys=list(keys), args=list(args))

    def _hash(self, scope: str) -> str:
        return f"{self._p}mod:{scope}"

    def now_ms(self) -> int:
        """Redis's clock, in milliseconds."""
        with self._cache.errors():
            seconds, micros = self._cache.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def hold(self, scopes: Sequence[str]) -> Hold:
        """Longest cooldown, recovering scopes, and whether the first scope's budget is known."""
        wait, which, recovering, known = self._run("hold", [self._hash(s) for s in scopes], scopes)
        names = tuple(r for r in str(recovering).split("\n") if r)
        return Hold(int(wait), str(which) or None, names, bool(int(known)))

    def admit(self, scope: str, rule: AdmitRule, *, record: bool = True, since: int | None = None) -> tuple[int, int]:
        """Admit against the shared send log (same rule as `admission_wait`); holds are never cached here."""
        args = [rule.window_ms, int(rule.pacing), rule.threshold_pct, int(record), secrets.token_hex(4)]
        wait, now = self._run("admit", [self._hash(scope), f"{self._p}modlog:{scope}"], args)
        return int(wait), int(now)

    def observe_success(self, scope: str, sent_ms: int, window_ms: int, margin_ms: int, *, count: bool = True) -> int:
        """Log the success; clear strikes and recovery; count earlier successes that surely counted."""
        keys = [self._hash(scope), f"{self._p}modok:{scope}"]
        args = [sent_ms, window_ms, margin_ms, secrets.token_hex(4), int(count)]
        return int(self._run("observe", keys, args))

    def raise_capacity(self, scope: str, capacity: int, ttl_ms: int, *, precise: bool) -> int:
        """Merge a learned capacity."""
        return int(self._run("raise", [self._hash(scope)], [capacity, ttl_ms, int(precise)]))

    def strike(self, scope: str, sent_ms: int) -> tuple[int, bool]:
        """Count a throttle (a new strike only for requests that left after the cooldown began)."""
        strikes, new = self._run("strike", [self._hash(scope)], [sent_ms, 24 * 3600 * 1000])
        return int(strikes), bool(int(new))

    def pause(self, scope: str, duration_ms: int, *, recovering: bool, limited_ms: int, relearn_window_ms: int) -> bool:
        """Extend-only cooldown, flags, and the capacity relearned from successes."""
        keys = [self._hash(scope), f"{self._p}modok:{scope}"]
        return bool(self._run("pause", keys, [duration_ms, int(recovering), limited_ms, relearn_window_ms]))

    def try_probe(self, scope: str, ttl_ms: int) -> str | None:
        """Become the probe of `scope` (SET NX with a TTL)."""
        holder = secrets.token_hex(8)
        with self._cache.errors():
            taken = self._cache.client.set(f"{self._p}modprobe:{scope}", holder, nx=True, px=ttl_ms)
        return holder if taken else None

    def end_probe(self, scope: str, holder: str) -> None:
        """Release the probe if we still hold it."""
        self._run("end_probe", [f"{self._p}modprobe:{scope}"], [holder])

    def acquire_slots(
        self, names: Sequence[str], limit: int, lease_ms: int, *, releasing: Sequence[tuple[str, str]] = ()
    ) -> list[str | None]:
        """ZREMs for `releasing`, then one script call per name: pipelined, one round trip."""
        holders = [secrets.token_hex(8) for _ in names]
        if not holders and not releasing:
            return []
        with self._cache.errors():
            pipe = self._cache.client.pipeline(transaction=False)
            for released, old in releasing:
                pipe.zrem(f"{self._p}slot:{released}", old)
            for name, holder in zip(names, holders, strict=True):
                self._scripts["slot"](keys=[f"{self._p}slot:{name}"], args=[limit, lease_ms, holder], client=pipe)
            answers = pipe.execute()[len(releasing) :]
        return [holder if int(ok) else None for holder, ok in zip(holders, answers, strict=True)]

    def active_cooldowns(self) -> dict[str, float]:
        """Scopes in a cooldown, with remaining seconds."""
        pattern = f"{self._p}mod:*"
        with self._cache.errors():
            keys = [str(k) for k in self._cache.client.scan_iter(match=pattern, count=500)]
        if not keys:
            return {}
        scopes = [k[len(self._p) + 4 :] for k in keys]
        flat = self._run("cooldowns", keys, scopes)
        return {str(flat[i]): int(flat[i + 1]) / 1000 for i in range(0, len(flat), 2)}
