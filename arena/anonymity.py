"""Identity leaks: judged when a vote is cast, so a vote that could tell who is who is kept but
does not count. Pure functions over text; the words to look for come from the registry.

A vote is excluded when
- the prompt asks the models who they are ("who made you?", "what model are you?"), or
- an answer names either model of the battle (its name, display name, family words from its
  registry entry's `identity_terms`, its organization), or
- an answer describes who made it ("I am an AI developed by ...", "I'm ChatGPT").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# Words in model names that say nothing about who made the model.
_GENERIC = frozenset(
    [
        "tiny",
        "mini",
        "small",
        "base",
        "large",
        "chat",
        "instruct",
        "it",
        "preview",
        "latest",
        "model",
        "demo",
        "turbo",
        "pro",
        "plus",
        "lite",
        "fast",
        "hf",
        "awq",
        "gptq",
        "gguf",
        "fp8",
        "fp16",
        "bf16",
        "int4",
        "int8",
    ]
)
# Families and makers a model may name itself after, whatever the battle's models are.
KNOWN_MAKERS = (
    "openai", "chatgpt", "gpt-3", "gpt-4", "gpt-5", "anthropic", "claude", "google", "gemini",
    "gemma", "bard", "deepmind", "meta ai", "llama", "mistral", "mixtral", "alibaba", "qwen",
    "deepseek", "microsoft", "phi-3", "phi-4", "cohere", "command r", "01.ai", "yi-", "xai",
    "grok", "zhipu", "chatglm", "baichuan", "moonshot", "kimi", "minimax", "nvidia", "nemotron",
    "ibm granite", "falcon", "vicuna", "lmsys", "tencent", "hunyuan", "bytedance", "doubao",
)  # fmt: skip

_IDENTITY_QUESTION = re.compile(
    r"\bwho\s+(are|made|created|built|trained|developed|owns)\s+you\b"
    r"|\bwhat\s+(is\s+your\s+name|are\s+you\s+called|model\s+are\s+you|(llm|ai|language\s+model)\s+are\s+you)\b"
    r"|\bwhat'?s\s+your\s+name\b"
    r"|\bwhich\s+(model|llm|ai|company|version)\b[^?.!]*\byou\b"
    r"|\bare\s+you\s+(chat)?(gpt|claude|gemini|llama|qwen|mistral|deepseek|grok)\b"
    r"|\b(your|you'?re)\s+(creator|developer|maker|model\s+name)\b"
    r"|\bidentify\s+yourself\b",
    re.IGNORECASE,
)
_SELF_DESCRIPTION = re.compile(
    r"\b(i\s+am|i'm|i\s+was)\s+(an?\s+)?([\w.\- ]{0,40}\s)?"
    r"(developed|created|trained|built|made|designed)\s+by\s+([\w.\-]+)",
    re.IGNORECASE,
)


def _term_pattern(term: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])" + re.escape(term.lower()) + r"(?![\w])")


def identity_terms(
    *, name: str, display_name: str, organization: str, extra: Iterable[str] = ()
) -> list[str]:
    """The words that would give a model away: its names, its family words, its maker."""
    terms = {name.lower(), display_name.lower()}
    terms |= {t.lower() for t in extra if t.strip()}
    if organization.strip():
        terms.add(organization.lower().strip())
    for word in re.split(r"[\s\-_./:]+", f"{name} {display_name}".lower()):
        # "qwen2.5-7b-instruct" gives "qwen2", "qwen"; sizes and generic words give nothing.
        stem = re.sub(r"[\d.]+[a-z]?$", "", word)
        for candidate in (word, stem):
            if len(candidate) >= 4 and candidate not in _GENERIC and not candidate.isdigit():
                terms.add(candidate)
    return sorted(term for term in terms if len(term) >= 3)


def asks_identity(prompts: Sequence[str]) -> bool:
    return any(_IDENTITY_QUESTION.search(prompt) for prompt in prompts)


def leak_reason(
    *,
    prompts: Sequence[str],
    answers: Sequence[str],
    terms: Iterable[str],
) -> str | None:
    """Why a vote on these prompts and answers cannot count, or None if nothing leaked."""
    if asks_identity(prompts):
        return "the prompt asks the models who they are"
    text = "\n".join(answers).lower()
    for term in terms:
        if _term_pattern(term).search(text):
            return "a model revealed its identity"
    if _SELF_DESCRIPTION.search(text):
        return "a model said who made it"
    for maker in KNOWN_MAKERS:
        if _term_pattern(maker).search(text) and re.search(
            r"\b(i\s+am|i'm|my\s+name\s+is|as\s+an?)\b[^.\n]{0,40}" + re.escape(maker), text
        ):
            return "a model said who made it"
    return None
