"""The engine simulator: a vLLM-compatible model server over a calibrated engine model."""

from rastos.engine.core import EngineConfig, EngineCore, StepOutput, StepPlan
from rastos.engine.profile import EngineProfile, load_profile
from rastos.engine.request import EngineRequest

__all__ = ["EngineConfig", "EngineCore", "EngineProfile", "EngineRequest", "StepOutput", "StepPlan", "load_profile"]
