"""The engine's waiting queue: FCFS (a deque) or priority (a heap), one interface.

Preempted requests go back to the front under FCFS; under ``priority`` their (priority,
arrival) key already orders them. Aborted requests leave the heap lazily.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterator

from rastos.engine.request import EngineRequest, RequestStatus

__all__ = ["WaitingQueue"]


class WaitingQueue:
    """FCFS deque or priority heap behind one interface (lazy deletion for aborts)."""

    def __init__(self, policy: str) -> None:
        self.policy = policy
        self._dq: deque[EngineRequest] = deque()
        self._heap: list[tuple[int, float, int, EngineRequest]] = []
        self._n = 0
        self._seq = itertools.count()

    def __len__(self) -> int:
        return self._n

    def push(self, req: EngineRequest) -> None:
        self._n += 1
        if self.policy == "fcfs":
            self._dq.append(req)
        else:
            heapq.heappush(self._heap, (req.priority, req.arrival_time, next(self._seq), req))

    def prepend(self, req: EngineRequest) -> None:
        """Put a preempted request back where it is served next."""
        if self.policy == "fcfs":
            self._n += 1
            self._dq.appendleft(req)
        else:
            self.push(req)  # its (priority, arrival) already orders it

    def _clean(self) -> None:
        h = self._heap
        while h and h[0][3].status is not RequestStatus.WAITING and h[0][3].status is not RequestStatus.PREEMPTED:
            heapq.heappop(h)

    def peek(self) -> EngineRequest:
        if self.policy == "fcfs":
            return self._dq[0]
        self._clean()
        return self._heap[0][3]

    def pop(self) -> EngineRequest:
        self._n -= 1
        if self.policy == "fcfs":
            return self._dq.popleft()
        self._clean()
        return heapq.heappop(self._heap)[3]

    def remove(self, req: EngineRequest) -> None:
        """Drop an aborted request (its status must already be FINISHED for the heap)."""
        if self.policy == "fcfs":
            self._dq.remove(req)
        self._n -= 1

    def __iter__(self) -> Iterator[EngineRequest]:
        if self.policy == "fcfs":
            return iter(self._dq)
        return (e[3] for e in self._heap if e[3].status in (RequestStatus.WAITING, RequestStatus.PREEMPTED))
