"""Identity leaks are judged at vote time: the vote is kept, marked invalid with its reason."""

from __future__ import annotations

import pytest

from arena.anonymity import asks_identity, identity_terms, leak_reason

QWEN = identity_terms(
    name="qwen2.5-7b-instruct",
    display_name="Qwen2.5 7B Instruct",
    organization="Alibaba",
    extra=["Tongyi"],
)


def test_identity_terms_keep_names_families_and_maker_but_not_generic_words() -> None:
    assert {"qwen2.5-7b-instruct", "qwen2.5 7b instruct", "qwen", "alibaba", "tongyi"} <= set(QWEN)
    assert not {"instruct", "7b", "2.5"} & set(QWEN)


@pytest.mark.parametrize(
    "prompt",
    [
        "Who are you?",
        "who made you",
        "What model are you, exactly?",
        "what's your name",
        "Which company trained you?",
        "Are you ChatGPT?",
        "Please identify yourself.",
    ],
)
def test_prompts_that_ask_for_identity_are_caught(prompt: str) -> None:
    assert asks_identity([prompt])
    assert leak_reason(prompts=[prompt], answers=["Hello."], terms=QWEN) == (
        "the prompt asks the models who they are"
    )


@pytest.mark.parametrize(
    "prompt",
    ["Who are the main characters of Hamlet?", "Write a poem about you and me.", "What is 2+2?"],
)
def test_ordinary_prompts_pass(prompt: str) -> None:
    assert not asks_identity([prompt])


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("I am Qwen, a large language model.", "a model revealed its identity"),
        ("As a model built by ALIBABA cloud, I think...", "a model revealed its identity"),
        ("I'm an AI assistant developed by Acme Labs.", "a model said who made it"),
        ("I am ChatGPT, how can I help?", "a model said who made it"),
        ("As an OpenAI model I cannot do that.", "a model said who made it"),
    ],
)
def test_answers_that_give_a_model_away_are_caught(answer: str, reason: str) -> None:
    assert leak_reason(prompts=["Hi"], answers=["Fine.", answer], terms=QWEN) == reason


@pytest.mark.parametrize(
    "answer",
    [
        "The capital of France is Paris.",
        "Llamas live in the Andes.",  # a maker's name in passing is not a self-description
        "The queen wore a crown.",  # 'qwen' must match a whole word
    ],
)
def test_innocent_answers_pass(answer: str) -> None:
    assert leak_reason(prompts=["Tell me something."], answers=[answer], terms=QWEN) is None
