"""The agent benchmark: cavelite against JSON function calling and CodeAct, on one model.

    python -m benchmarks.agents --model oracle
    python -m benchmarks.agents --base-url http://127.0.0.1:8765/v1 --model qwen2.5-coder-0.5b

See benchmarks/agents/README.md.
"""
