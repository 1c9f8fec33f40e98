"""Profile handlers: which scheduling profiles run for a request, and which result wins."""

from __future__ import annotations

from typing import Any

from rastos.sched.framework import ProfileHandler, ProfileResult, register
from rastos.sched.request import SchedRequest

__all__ = ["SingleProfileHandler"]


@register
class SingleProfileHandler(ProfileHandler):
    """Run the one profile there is; its result is the result."""

    type_name = "single-profile-handler"

    def pick_profiles(self, req: SchedRequest, profiles: dict[str, Any], done: dict[str, ProfileResult]) -> list[str]:
        if done:
            return []
        if len(profiles) != 1:
            raise ValueError("single-profile-handler needs exactly one scheduling profile")
        return list(profiles)

    def process_results(self, req: SchedRequest, done: dict[str, ProfileResult]) -> str:
        return next(iter(done))
