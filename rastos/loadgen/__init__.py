"""Load generation against OpenAI-compatible servers (sim engines, the gateway, real vLLM)."""
