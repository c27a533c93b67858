"""Who may do what: claiming can be limited to sales (SALES_IDS or a user group)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Executor

from bot.clock import Clock
from bot.delivery import DeliveryError, Slack
from bot.settings import Settings

log = logging.getLogger(__name__)

GROUP_TTL = 300.0  # seconds a user group's member list is trusted before asking Slack again


class ClaimAccess:
    """The sales group's members come from Slack once, then from a list refreshed every
    GROUP_TTL in the background: a claim never waits on Slack for a list it already has."""

    def __init__(
        self, settings: Settings, slack: Slack, *, clock: Clock, background: Executor
    ) -> None:
        self.settings = settings
        self.slack = slack
        self.clock = clock
        self.background = background
        self._members: frozenset[str] | None = None
        self._fetched = clock.now()
        self._refreshing = False
        self._lock = threading.Lock()
        # Slack's answer while the group cannot be read (no_such_subteam, missing_scope, …).
        self._error: str | None = None

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
            if self._members is None:
                # Nobody can be judged without a list: the first claims wait for it.
                self._store(self._read())
                return self._members or frozenset()
            stale = (self.clock.now() - self._fetched).total_seconds() >= GROUP_TTL
            if stale and not self._refreshing:
                self._refreshing = True
                try:
                    self.background.submit(self._refresh)
                except RuntimeError:  # shutting down: the list it has will do
                    self._refreshing = False
            return self._members

    def _refresh(self) -> None:
        members = None
        try:
            members = self._read()
        except Exception as e:  # logged by type; a bug must not stop the refreshes after it
            log.error("refreshing SALES_USERGROUP members failed: %s", type(e).__name__)
        finally:
            with self._lock:
                self._store(members)
                self._refreshing = False

    def _read(self) -> frozenset[str] | None:
        try:
            members = frozenset(self.slack.usergroup_members(self.settings.sales_usergroup))
        except DeliveryError as e:
            # The last known list stays rather than locking everyone out during a blip; the
            # next claim asks again. An answer no retry fixes is the admin's to act on: an
            # error, once per answer rather than once per refused claim.
            if e.transient:
                log.warning("could not read SALES_USERGROUP members: %s", e.code)
            elif e.code != self._error:
                log.error(
                    "SALES_USERGROUP %s cannot be read: Slack answered %s — check the group id "
                    "and that the app has the usergroups:read scope",
                    self.settings.sales_usergroup,
                    e.code,
                )
            self._error = e.code
            return None
        self._error = None
        return members

    def _store(self, members: frozenset[str] | None) -> None:
        if members is not None:
            self._members = members
            self._fetched = self.clock.now()

    @property
    def unreadable(self) -> bool:
        """Whether claiming waits on a sales group nobody's membership could be read of."""
        return bool(self.settings.sales_usergroup and self._members is None and self._error)

    def refusal(self) -> str:
        who = "the sales team"
        group = self.settings.sales_usergroup
        if self.unreadable:
            # Not "only members can claim": nobody's membership could be read at all.
            return (
                f"leadbot cannot read <!subteam^{group}> from Slack ({self._error}), so only "
                "managers can claim for now; nothing changed. Tell your leadbot admin."
            )
        if group:
            who = f"members of <!subteam^{group}>"
        return f"Only {who} can claim leads; nothing changed. Ask a manager if that's wrong."
