"""Who may do what: claiming can be limited to sales (SALES_IDS or a user group)."""

from __future__ import annotations

import logging
import threading
import time

from bot.delivery import DeliveryError, Slack
from bot.settings import Settings

log = logging.getLogger(__name__)

GROUP_TTL = 300.0  # seconds a user group's member list is trusted before asking Slack again


class ClaimAccess:
    def __init__(self, settings: Settings, slack: Slack) -> None:
        self.settings = settings
        self.slack = slack
        self._members: frozenset[str] | None = None
        self._fetched = 0.0
        self._lock = threading.Lock()

    @property
    def restricted(self) -> bool:
        return bool(self.settings.sales_ids or self.settings.sales_usergroup)

    def may_claim(self, user_id: str) -> bool:
        """Managers and listed sales people always; group members per the cached list."""
        s = self.settings
        if not self.restricted or user_id in s.manager_ids or user_id in s.sales_ids:
            return True
        if not s.sales_usergroup:
            return False
        return user_id in self._group_members()

    def _group_members(self) -> frozenset[str]:
        with self._lock:
            fresh = time.monotonic() - self._fetched < GROUP_TTL
            if self._members is not None and fresh:
                return self._members
            try:
                members = self.slack.usergroup_members(self.settings.sales_usergroup)
            except DeliveryError as e:
                # Keep the last known list rather than locking everyone out during a blip.
                log.warning("could not read SALES_USERGROUP members: %s", e.code)
                return self._members or frozenset()
            self._members = frozenset(members)
            self._fetched = time.monotonic()
            return self._members

    def refusal(self) -> str:
        who = "the sales team"
        if self.settings.sales_usergroup:
            who = f"members of <!subteam^{self.settings.sales_usergroup}>"
        return f"Only {who} can claim leads; nothing changed. Ask a manager if that's wrong."
