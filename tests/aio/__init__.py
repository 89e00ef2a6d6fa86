"""Tests of wshub.aio, the asyncio server and client, on real loopback sockets.

``UNIT`` is the one time unit of these tests, in seconds: every timeout, interval and
backoff they configure is a multiple of it. Nothing is asserted about elapsed time; the
unit only bounds how long a test waits for something that must happen.
"""

from __future__ import annotations

UNIT = 0.05

#: How long a test waits for an event that must come (a generous multiple of UNIT).
WAIT = 100 * UNIT
