"""A few seconds of training for the demo's tiny models, on a text shipped in the repository.

Random weights answer with noise that rarely stops on its own: a demo answer then runs to
`max_tokens`, and a vote on a cut-off answer does not count. A short training run on
chat-formatted question/answer pairs, each closed by the end-of-sequence token, teaches a tiny
model two things in seconds: to answer in English-looking sentences, and to stop. Models trained
for more steps read better, so that votes on the demo rank them in that order.

Everything is offline and seeded: the corpus is `workers/demo_corpus/conversations.txt`
(written for this project, public domain; read by `workers.demo_corpus`), the data order and
the weights come from the seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from workers.demo_corpus import Pair


@dataclass(frozen=True)
class TrainingRecipe:
    """How a tiny model is trained; part of its cache key (a changed recipe retrains)."""

    steps: int
    batch_size: int = 8
    seq_len: int = 128
    learning_rate: float = 3e-3
    warmup_steps: int = 10

    def as_dict(self) -> dict[str, float | int]:
        return {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
        }


def chat_sample(tokenizer: PreTrainedTokenizerBase, pair: Pair) -> str:
    """One pair rendered with the model's own chat template: the exact text that a generation
    prompt continues, with the answer closed by the end-of-sequence token."""
    messages = [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return str(tokenizer.apply_chat_template(messages, tokenize=False))


def model_train(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Pair],
    recipe: TrainingRecipe,
    *,
    seed: int,
) -> list[float]:
    """Train `model` in place on chat samples of `pairs`; returns the loss of each step.

    Each batch row is a window of `seq_len` tokens of the shuffled samples laid end to end,
    starting at the beginning of a sample, so every answer is seen with its prompt before it
    and its end-of-sequence token after it. AdamW with a linear warm-up and a cosine decay to a
    tenth of the rate. The caller seeds the weights; `seed` orders the data.
    """
    if recipe.steps < 1:
        raise ValueError(f"steps must be at least 1, not {recipe.steps}")
    if not pairs:
        raise ValueError("no pairs to train on")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(pairs), generator=generator).tolist()
    stream: list[int] = []
    starts: list[int] = []
    for index in order:
        starts.append(len(stream))
        text = chat_sample(tokenizer, pairs[index])
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
    # Wrap around (as often as a short corpus needs), so that every window is whole.
    stream *= 1 + math.ceil(recipe.seq_len / len(stream))
    tokens = torch.tensor(stream)
    start_ids = torch.tensor(starts)
    offsets = torch.arange(recipe.seq_len)

    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=0.01)

    def rate(step: int) -> float:
        if step < recipe.warmup_steps:
            return (step + 1) / recipe.warmup_steps
        progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    # One thread: the matrices are too small to gain from more, and on a busy machine (other
    # processes on the same cores) two spinning threads made training ten times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.train()
    losses = []
    try:
        for _ in range(recipe.steps):
            picks = torch.randint(len(starts), (recipe.batch_size,), generator=generator)
            batch = tokens[start_ids[picks][:, None] + offsets]
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
        model.train(False)  # eval mode
    return losses


@torch.no_grad()
def bits_per_character(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[Pair]
) -> float:
    """How well `model` predicts the chat samples of `pairs`: its total negative log-likelihood
    in bits over the characters of the pairs' text.

    Per character, not per token: the demo models have different tokenizers, and a loss per
    token would favour the one that cuts text into more, easier pieces.
    """
    total_bits = 0.0
    characters = 0
    for pair in pairs:
        ids = tokenizer(chat_sample(tokenizer, pair), add_special_tokens=False, return_tensors="pt")
        input_ids = ids["input_ids"]
        # .loss is the mean over the n - 1 predicted tokens.
        loss = float(model(input_ids=input_ids, labels=input_ids).loss)
        total_bits += loss * (input_ids.shape[1] - 1) / math.log(2)
        characters += len(pair[0]) + len(pair[1])
    return total_bits / characters
