"""The digital twin: the real scheduler over simulated engines, in virtual time."""

from rastos.twin.sim import RequestRecord, SimResult, Simulation, TwinConfig

__all__ = ["RequestRecord", "SimResult", "Simulation", "TwinConfig"]
