"""A tiny vision-language model built on the fly, so a vision battle needs no download and no GPU.

A standard Hugging Face LLaVA: a one-layer CLIP vision tower on 32x32 images (16 patches of 8x8),
a linear projector and a two-layer Llama with random weights, plus a `LlavaProcessor` (a CLIP
image processor that needs Pillow only, the byte-level BPE tokenizer of `workers.tiny_models`
with an `<image>` token, and a chat template that places the image before the text). It loads
offline with `AutoProcessor` and `AutoModelForImageTextToText`, answers with noise in well under
a second on a CPU, and really reads the pixels: its answer depends on the image.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    GenerationConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from workers.tiny_models import BuiltModel
from workers.tiny_tokenizer import (
    BOS,
    DEFAULT_CORPUS,
    EOS,
    MAX_POSITIONS,
    PAD,
    train_tokenizer,
)

BUILDER_VERSION = 1
MARKER = "arena-tiny-vision.json"
IMAGE_TOKEN = "<image>"
IMAGE_SIZE = 32
PATCH_SIZE = 8

# A message's content is a string or a list of parts ({"type": "image"} / {"type": "text"}),
# the form transformers' processors take; each turn ends with eos, as in the text models.
VISION_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def build_tiny_vision_model(path: Path, *, seed: int, hidden_size: int = 128) -> Path:
    """Build a random-weight LLaVA into `path`, or do nothing if the same recipe is there.

    Parameters
    ----------
    path
        The model folder; if it exists it must be empty or hold a model built here.
    seed
        Seeds the weights.
    hidden_size
        The language model's width (head dim 64: two heads of 64 at the default).

    Returns
    -------
    Path
        `path`, loadable offline with `AutoProcessor` and `AutoModelForImageTextToText`.
    """
    path = Path(path)
    recipe = {"builder_version": BUILDER_VERSION, "seed": seed, "hidden_size": hidden_size}
    marker = path / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("recipe") == recipe:
        return path
    if path.exists() and any(path.iterdir()) and not marker.is_file():
        raise ValueError(f"{path} is not empty and was not built by build_tiny_vision_model")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    staging.chmod(0o755)
    try:
        params = _build_into(staging, seed=seed, hidden_size=hidden_size)
        (staging / MARKER).write_text(json.dumps({"recipe": recipe, "params": params}) + "\n")
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _build_into(folder: Path, *, seed: int, hidden_size: int) -> int:
    tokenizer = train_tokenizer(DEFAULT_CORPUS, 512)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    tokenizer.chat_template = VISION_CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (BOS, EOS, PAD, IMAGE_TOKEN)}
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=hidden_size // 64,
        num_key_value_heads=hidden_size // 64,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=ids[BOS],
        eos_token_id=ids[EOS],
        pad_token_id=ids[PAD],
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=ids[IMAGE_TOKEN],
        vision_feature_layer=-1,
        # "default" drops CLIP's class token: one token per patch, 16 per image.
        vision_feature_select_strategy="default",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD]
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        image_token=IMAGE_TOKEN,
        chat_template=VISION_CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


# The demo's vision models (`vision = true` in models.toml): two, since a battle needs a pair.
DEMO_VISION_MODELS: tuple[tuple[str, int], ...] = (("tiny-llava-a", 31), ("tiny-llava-b", 32))


def build_demo_vision_models(data_dir: Path) -> list[BuiltModel]:
    """Build the demo's vision models under `data_dir/models/<name>` (idempotent)."""
    built = []
    for name, seed in DEMO_VISION_MODELS:
        path = build_tiny_vision_model(Path(data_dir) / "models" / name, seed=seed)
        params = int(json.loads((path / MARKER).read_text())["params"])
        built.append(BuiltModel(name=name, path=path, params=params))
    return built
