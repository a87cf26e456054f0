"""Kept for tests/faults/test_unequal_parts.py; remove when it moves to :class:`support.proxy.Proxy`.

The old fault proxy's ``add``/``clear`` live on the proxy's fault behaviour now
(``proxy.faults.add``); this subclass answers the old names as well.
"""

from __future__ import annotations

from typing import Any

from support.proxy import Action, Proxy, Rule


class FaultProxy(Proxy):
    """:class:`support.proxy.Proxy` with the old fault proxy's ``add``/``clear``."""

    def add(self, action: Action, **kw: Any) -> Rule:
        return self.faults.add(action, **kw)

    def clear(self) -> None:
        self.faults.clear()
