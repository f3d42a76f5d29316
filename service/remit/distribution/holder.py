"""Holds the policy version in force. A swap replaces one reference; a request reads it
once and decides wholly under that version."""

from __future__ import annotations

import threading

from remit.model.policy import PolicySet


class PolicyHolder:
    def __init__(self, policies: PolicySet) -> None:
        self._policies = policies
        self._lock = threading.Lock()

    def current(self) -> PolicySet:
        return self._policies

    def swap(self, policies: PolicySet) -> PolicySet:
        """Install ``policies`` (already built and verified); returns the previous set."""
        with self._lock:
            old, self._policies = self._policies, policies
        return old
