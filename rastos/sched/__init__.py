"""The scheduling core: pure endpoint picking shared by the gateway, ext_proc and the twin."""

from rastos.sched.config import build_scheduler, list_policies, load_policy
from rastos.sched.fleet import Endpoint, FleetState
from rastos.sched.framework import SchedulingResult
from rastos.sched.request import SchedRequest
from rastos.sched.scheduler import NoCandidates, Scheduler

__all__ = [
    "Endpoint",
    "FleetState",
    "NoCandidates",
    "SchedRequest",
    "Scheduler",
    "SchedulingResult",
    "build_scheduler",
    "list_policies",
    "load_policy",
]
