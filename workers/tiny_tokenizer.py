"""The tiny models' tokenizer: a byte-level BPE trained here on a small mixed corpus, with the
chat template the tiny models speak (workers/tiny_models.py, workers/tiny_vision.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

MAX_POSITIONS = 2048

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, *ROLE_TOKENS)

# Each turn is closed by the eos token, so a model that says eos has ended its answer.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

PROSE: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "Hello! How can I help you today?",
    "Sure, here is a short answer to your question.",
    "I think the best way to learn a language is to read a little every day.",
    "The weather was cold, so we stayed inside and made tea.",
    "Paris is the capital of France, and Rome is the capital of Italy.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "There are many reasons why this might happen; let me explain a few of them.",
    "First, check the settings. Then restart the service and try again.",
    "In summary, both options work, but the second one is simpler.",
    "She opened the window and listened to the rain on the roof.",
    "Thank you for asking. That is a great question!",
    "A model answers a prompt, and people vote for the better answer.",
    "It depends on the context, but usually the answer is yes.",
    "Once upon a time, a small robot wanted to write poems about the sea.",
    "The meeting starts at nine, so please be on time.",
    "Numbers like 3.14, 42 and 2024 appear in many answers.",
    "Let's think step by step: 2 + 3 = 5, and 5 * 4 = 20.",
    "The function returns a list of names, sorted by their rating.",
    "Here are three ideas: a picnic, a museum visit, or a walk by the river.",
    "Why is the sky blue? Because air scatters blue light more than red light.",
    "Dear team, the release is ready for review. Best regards, Sam.",
    "To be, or not to be, that is the question.",
    "Errors should never pass silently, unless explicitly silenced.",
)
CODE: tuple[str, ...] = (
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    print(i * i)\n",
    'import json\n\ndata = json.loads(text)\nprint(data["name"])\n',
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "if x > 0:\n    return True\nelse:\n    return False\n",
    "const total = items.reduce((sum, item) => sum + item.price, 0);",
    "SELECT name, count(*) FROM votes GROUP BY name ORDER BY 2 DESC;",
    "$ pip install -e . && python -m pytest -q",
    'fn main() {\n    println!("Hello, world!");\n}\n',
)
MARKDOWN: tuple[str, ...] = (
    "# Getting started\n\nInstall the package, then run the server.\n",
    "## Steps\n\n1. Clone the repository.\n2. Create a virtual environment.\n3. Run the tests.\n",
    "- **Fast**: answers stream as they are written.\n- **Fair**: the names stay hidden.\n",
    "| model | score |\n| --- | --- |\n| alpha | 1012 |\n| beta | 988 |\n",
    "> Note: the results may change as more votes arrive.\n",
    "Use `git status` to see which files changed, and `git diff` to see how.",
    "```python\nprint('hello')\n```\n",
)
DEFAULT_CORPUS: tuple[str, ...] = PROSE + CODE + MARKDOWN


def train_tokenizer(corpus: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        # The full byte alphabet, so that any prompt (accents, emoji) encodes without loss.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        model_max_length=MAX_POSITIONS,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def patch_tokenizer_config(folder: Path) -> None:
    # transformers 5 names the class "TokenizersBackend", which 4.x (as in a vLLM venv) cannot
    # resolve; "PreTrainedTokenizerFast" loads in both. The template goes in the config too,
    # for readers older than the separate chat_template.jinja file.
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def byte_level_alphabet() -> list[str]:
    # GPT-2's reversible byte-to-character map, as used by tokenizers' ByteLevel: printable
    # Latin-1 bytes map to themselves, the rest to 256 + n, in byte order.
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars = []
    extra = 0
    for byte in range(256):
        if byte in keep:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars
