"""The simulated vLLM-like engine: scheduler, KV cache, performance model, HTTP shell."""
