"""The dataset card (``README.md``) of an export: a YAML header that the Hugging Face Hub and
``datasets`` read (license, languages, size, task categories, tags, configs, features), and a
body that says how the data was collected, filtered and counted, and what each column means.

The YAML is written by hand (strings JSON-quoted, which YAML accepts) to need no YAML library.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from leaderboard.data.formats.records import RecordFormat

if TYPE_CHECKING:
    from leaderboard.data.selection import ExportResult

_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
          (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"))  # fmt: skip
_DTYPES = {pa.string(): "string", pa.int64(): "int64", pa.float64(): "float64", pa.bool_(): "bool"}


def size_category(n: int) -> str:
    return next((label for limit, label in _SIZES if n < limit), "10M<n<100M")


def features_yaml(schema: pa.Schema | pa.StructType, indent: int) -> list[str]:
    """``datasets`` feature declarations for a schema (the form ``Features._to_yaml_list`` uses)."""
    pad, lines = " " * indent, []
    for item in schema:
        lines.append(f"{pad}- name: {item.name}")
        lines.extend(_type_yaml(item.type, indent + 2))
    return lines


def _type_yaml(kind: pa.DataType, indent: int) -> list[str]:
    pad = " " * indent
    if kind in _DTYPES:
        return [f"{pad}dtype: {_DTYPES[kind]}"]
    if pa.types.is_struct(kind):
        return [f"{pad}struct:", *features_yaml(kind, indent)]
    if pa.types.is_list(kind):
        inner = kind.value_type
        if inner in _DTYPES:
            return [f"{pad}list: {_DTYPES[inner]}"]
        if pa.types.is_struct(inner):
            return [f"{pad}list:", *features_yaml(inner, indent)]
    raise ValueError(f"no dataset feature for the Arrow type {kind}")


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def card_render(
    *,
    result: ExportResult,
    record_format: RecordFormat,
    schema: pa.Schema,
    filters: Sequence[str],
    options: Mapping[str, Any],
    license: str,
) -> str:
    """The whole ``README.md`` of an export folder."""
    languages = [tag for tag, _ in result.languages.most_common() if tag and tag != "und"]
    header = ["---", f"license: {license}"]
    if languages:
        header += ["language:", *(f"- {tag}" for tag in languages)]
    header += ["size_categories:", f"- {size_category(result.records)}"]
    header += ["task_categories:", *(f"- {t}" for t in record_format.task_categories)]
    header += ["tags:", *(f"- {t}" for t in record_format.tags)]
    header += ["configs:", "- config_name: default", "  data_files:"]
    for split in result.splits:
        header += [f"  - split: {split}", f"    path: data/{split}-*"]
    header += ["dataset_info:", "  features:", *features_yaml(schema, 2), "---", ""]
    return "\n".join(header + _body(result, record_format, schema, filters, options)) + "\n"


def _body(
    result: ExportResult,
    record_format: RecordFormat,
    schema: pa.Schema,
    filters: Sequence[str],
    options: Mapping[str, Any],
) -> list[str]:
    lines = [
        f"# Model Arena preferences ({record_format.name})",
        "",
        f"{record_format.summary.capitalize()}. Exported from a Model Arena instance as "
        f"{result.file_format.upper()} files under `data/`.",
        "",
        "## How it was collected",
        "",
        "A visitor writes a prompt; two models drawn at random answer side by side under the "
        'names "Model A" and "Model B"; the visitor may continue the conversation, then votes '
        "for A, B, a tie or both bad, and only then sees the names. Battles imported from other "
        "arenas' logs keep their original ids, times and anonymity flag. Voters are never "
        "identified: no IP address, session key or account id leaves the database, and the "
        "`judge` column (arena format only) is a salted hash "
        + (
            "with a salt chosen by the exporter, stable across exports made with it."
            if options.get("stable_judge")
            else "whose salt is random for each export, so it links votes within this export only."
        ),
        "",
        "## Filters",
        "",
        *(f"- {line}" for line in filters),
    ]
    if options.get("dedup"):
        lines.append(
            "- deduplicated: exact repeats (same normalised prompts and same answers) dropped, "
            f"and no prompt kept more than {result.prompt_cap} times (the "
            f"{options['dedup_percentile']}th percentile of prompt counts)"
        )
    if options.get("test_fraction"):
        lines.append(
            f"- split: about {options['test_fraction']:.0%} of prompts in `test`, chosen by a "
            f"keyed hash (seed {options['seed']}) of the normalised first prompt, so a prompt "
            "is never in both splits and the assignment does not change as data grows"
        )
    lines += ["", "## Counts", "", "| what | count |", "| --- | ---: |"]
    lines.append(f"| votes selected | {result.rows} |")
    lines += [f"| records in `{split}` | {n} |" for split, n in result.splits.items()]
    if options.get("dedup"):
        lines.append(f"| exact duplicates dropped | {result.duplicates_dropped} |")
        lines.append(f"| dropped by the per-prompt cap | {result.capped_dropped} |")
    lines += [f"| skipped: {reason} | {n} |" for reason, n in sorted(result.skipped.items())]
    lines += ["", "## Columns", "", "| column | meaning |", "| --- | --- |"]
    lines += [f"| `{f.name}` | {record_format.columns.get(f.name, '')} |" for f in schema]
    lines += [
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        'dataset = load_dataset("path/to/this/folder")',
        "```",
    ]
    if record_format.name.startswith("trl") or record_format.name == "kto":
        trainer = {"trl-dpo": "DPOTrainer", "trl-reward": "RewardTrainer", "kto": "KTOTrainer"}
        lines += [
            "",
            f'The columns are TRL\'s conversational layout: pass `dataset["train"]` to '
            f"`trl.{trainer[record_format.name]}` as it is; the trainer applies the model's chat "
            "template.",
        ]
    return lines
