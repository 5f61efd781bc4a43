"""A request's prompt tokens as the sidecar can know them when it arrives.

The tokenizer lives in the engine, and asking the engine (vLLM's ``/tokenize``) would
put a round trip in front of every request. The engine does report each request's
``usage.prompt_tokens`` at the end of its stream, so the sidecar learns tokens per
character of prompt text from those reports (chat and plain completions apart: a chat
template adds its own tokens) and estimates a new prompt from its length. Prompts sent as
token ids are counted exactly.
"""

from __future__ import annotations

from latency_oracle.sidecar.completion_request import CompletionRequest

# English BPE tokenizers average about four characters per token.
INITIAL_TOKENS_PER_CHAR = 0.25
# Weight of each new report: the estimate follows a workload within a few dozen requests.
LEARNING_RATE = 0.1


class PromptTokenEstimate:
    """Tokens per character of prompt text, learned per kind of request."""

    def __init__(self) -> None:
        self.tokens_per_char = {False: INITIAL_TOKENS_PER_CHAR, True: INITIAL_TOKENS_PER_CHAR}

    def estimate(self, plan: CompletionRequest) -> int:
        """The request's prompt tokens: exact for ids, estimated for text."""
        text = plan.prompt_chars * self.tokens_per_char[plan.chat]
        return plan.prompt_token_ids + round(text)

    def learn(self, plan: CompletionRequest, prompt_tokens: int) -> None:
        """Take in the engine's count of a finished request's prompt tokens."""
        text_tokens = prompt_tokens - plan.prompt_token_ids
        if plan.prompt_chars <= 0 or text_tokens <= 0:
            return
        ratio = self.tokens_per_char[plan.chat]
        self.tokens_per_char[plan.chat] = ratio + LEARNING_RATE * (
            text_tokens / plan.prompt_chars - ratio
        )
