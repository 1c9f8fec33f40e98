"""Request analysis: from an OpenAI request body and headers to what the scheduler needs."""

from rastos.analysis.analyzer import AnalysisError, RequestAnalyzer, prompt_bytes

__all__ = ["AnalysisError", "RequestAnalyzer", "prompt_bytes"]
