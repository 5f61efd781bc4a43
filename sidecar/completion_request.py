"""What the proxy needs to know about a completion request before it goes upstream.

TPOT needs the output token count, which a stream only reports when the client asked
for ``stream_options.include_usage``. When it did not, the proxy asks on its behalf and
remembers to remove the extra chunk on the way back. Requests the proxy cannot read (not
a JSON object, odd ``stream_options``) go upstream untouched and are not measured: the
engine's answer to them is the client's business.

Asking on the client's behalf splices the option into the client's bytes rather than
re-serialising the request: json.dumps of a long prompt costs tens of microseconds on the
proxy's path (~20 us for 6 KB), and the engine gets the client's bytes with only the
option added.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from latency_oracle.features.schema import MAX_TOKENS

_USAGE_OPTION = b'"stream_options":{"include_usage":true},'


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    streamed: bool
    single_choice: bool
    strip_usage_chunk: bool
    max_tokens: int
    upstream_body: bytes
    chat: bool = False
    prompt_chars: int = 0  # characters of prompt text (the token count is estimated)
    prompt_token_ids: int = 0  # prompt tokens sent as ids (counted exactly)
    prompt: Any = None  # the prompt or messages as parsed: words are counted after the end


def read_completion_request(body: bytes, chat: bool = False) -> CompletionRequest | None:
    """The request's measuring plan, or None when it should pass through unmeasured."""
    try:
        request = json.loads(body)
    except ValueError:
        return None
    if not isinstance(request, dict):
        return None
    streamed = request.get("stream") is True
    options = request.get("stream_options")
    if options is not None and not isinstance(options, dict):
        return None
    strip = streamed and (options or {}).get("include_usage") is not True
    prompt = request.get("messages") if chat else request.get("prompt")
    chars, ids = _prompt_size(prompt)
    return CompletionRequest(
        streamed=streamed,
        single_choice=request.get("n") in (1, None) and request.get("best_of") in (1, None),
        strip_usage_chunk=strip,
        max_tokens=_max_tokens(request),
        upstream_body=_asking_for_usage(body, request) if strip else body,
        chat=chat,
        prompt_chars=chars,
        prompt_token_ids=ids,
        prompt=prompt,
    )


def _prompt_size(prompt: Any) -> tuple[int, int]:
    """(characters of text, token ids) in a prompt, a batch of prompts or chat messages.

    Text is measured in characters, since the tokenizer lives in the engine; token ids
    count one each. Chat content may be a string or a list of parts (text parts count).
    """
    if isinstance(prompt, str):
        return len(prompt), 0
    if isinstance(prompt, int) and not isinstance(prompt, bool):
        return 0, 1
    if isinstance(prompt, dict):
        text = prompt.get("content", prompt.get("text"))
        return _prompt_size(text) if isinstance(text, str | list) else (0, 0)
    if isinstance(prompt, list) and prompt and type(prompt[0]) is int:
        return 0, len(prompt)  # token ids: counted without a loop on the request's path
    if isinstance(prompt, list):
        chars = ids = 0
        for part in prompt:
            part_chars, part_ids = _prompt_size(part)
            chars += part_chars
            ids += part_ids
        return chars, ids
    return 0, 0


def prompt_words(prompt: Any) -> int:
    """Whitespace-separated words of a prompt's text, as gateways and llm-d count them.

    Counted once the request has ended, off the client's path (a split of a long prompt
    costs tens of microseconds).
    """
    if isinstance(prompt, str):
        return len(prompt.split())
    if isinstance(prompt, dict):
        return prompt_words(prompt.get("content", prompt.get("text")))
    if isinstance(prompt, list) and not (prompt and type(prompt[0]) is int):
        return sum(prompt_words(part) for part in prompt)
    return 0


def _asking_for_usage(body: bytes, request: dict[str, Any]) -> bytes:
    """The body with ``stream_options.include_usage`` set; ``request`` is its parsed form.

    A streamed request is a non-empty object, so with no ``stream_options`` key at all the
    option goes in after its opening brace; otherwise (other options to keep, or a body not
    in plain UTF-8) the request is serialised again with the option merged in.
    """
    stripped = body.lstrip()
    if "stream_options" not in request and stripped.startswith(b"{"):
        return _USAGE_OPTION.join((b"{", stripped[1:]))
    options = request.get("stream_options") or {}
    merged = {**request, "stream_options": {**options, "include_usage": True}}
    return json.dumps(merged, separators=(",", ":")).encode()


def _max_tokens(request: dict[str, Any]) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = request.get(name)
        if type(value) is int and 0 <= value <= MAX_TOKENS:
            return value
    return 0
