"""A real vLLM in the loop: engines, sidecars and load, for tests and benchmarks.

``install`` (the engine's own venv, the models made by ``make_model``), ``engine`` and
``fleet`` (N pinned engines, sidecars, restarts), ``prompts``, ``client`` and
``epp_view`` (what clients send and see, what llm-d's endpoint picker sees), ``live`` (the
live accuracy run), ``recording`` and ``score`` (recorded runs and their judging). vLLM
is never a dependency of the product: see docs/real-engine.md.
"""
