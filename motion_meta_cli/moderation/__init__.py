"""Shared moderation: every instance waits out what Meta told any of them, and paces by what it learned.

What a reader must hold, in the order a request meets them:

1. **scope**: what Meta limits as a whole: `app`, `user:<customer>`, `buc:<business>:<type>`,
   `page:<id>`, `ad_account:<id>`; a request carries the app, its token, and its named scopes.
2. **named scopes**: per customer (`names:<customer>`), the scopes Meta tied to it in any answer.
3. **record**: what the state keeps per key (`rules.Scope` for a scope), with an expiry.
4. **cooldown**: no request on the scope until it ends; only ever extended.
5. **strike**: a throttle of a request sent after the cooldown began; strikes grow the next pause.
6. **recovery and probe**: after a cooldown without an ETA, one request (a lease of one attempt) goes
   first; the others wait for its answer. Pacing starts the same way, with the app's budget probe.
7. **budget**: calls per window learned from usage percentages (coarse below 50 %, then precise).
8. **send log**: when our requests left, per metered scope; it admits while under the budget. A
   process admits one request at a time (its gate) while reacting only, while a budget is unknown,
   and for requests the log has held; otherwise side by side.
9. **limited**: throttled lately, so the budget binds even with pacing off.
10. **slot**: one of a customer's requests in flight, a lease of one attempt (`slots.py`).
11. **ticket**: one admitted attempt; it gives back what it holds however the attempt ends.
12. **fallback**: in-process moderation while the shared state cannot be reached (`failsafe.py`); it
    starts from the records the shared state last returned.
13. **share**: what of each budget an instance may fill, from the instances that announce themselves
    with a heartbeat (`presence.py`): 1/n while cut off, less what others sent alone once back.

The rules are `rules.py` (pure); the backends (`state.LocalState`, `sqlite_state`, `redis_state`)
offer three primitives and store; `moderator.py` sequences and sleeps.
"""
