"""The data stage: generate, read/convert, validate, clean, split, augment and report on chat datasets.

Taught in 02_dataset. Light on import (standard library only; datasketch, transformers and matplotlib load inside
the functions that need them). ``helpers.data.validate`` is the function of ``helpers.data.validation``.
"""

from helpers.config import TICKETS_DIR
from helpers.data.augment import (
    add_typos,
    augment,
    corrupt_labels,
    drop_order_id,
    llm_rewrite,
    reorder_sentences,
    synthetic_share,
    targeted_rows,
)
from helpers.data.clean import (
    CleanConfig,
    CleanResult,
    balance_report,
    category_of,
    clean_file,
    clean_rows,
    detection_scores,
    make_near_duplicates,
    normalise_whitespace,
    scrub_pii,
)
from helpers.data.distillation import DistillResult, distill, noisy_teacher, rule_teacher
from helpers.data.formats import (
    DataFormatError,
    check_openai,
    convert,
    detect_format,
    export_openai,
    read_csv,
    read_jsonl,
    read_rows,
    render_chat,
    to_messages,
    to_openai,
    to_prompt_completion,
    to_text,
    write_jsonl,
)
from helpers.data.preference import (
    PreferenceDataError,
    check_pairs,
    corrected,
    grpo_rows,
    mistake_of,
    pairs_table,
    preference_pairs,
)
from helpers.data.report import DataReport, data_report, write_report
from helpers.data.rows import SPLIT_NAMES, answer_of, load_split, split_path, ticket_text
from helpers.data.split import LeakageReport, SplitConfig, check_leakage, group_ids, split_rows
from helpers.data.screen import screen_rows, screen_scores, screen_text
from helpers.data.validation import TemplateError, ValidationReport, turn_tokens, validate

# Tickets the course team wrote by hand (never generated, never trained on): a held-out check that the fine-tuned
# model reads real phrasings, not only the generator's. Read it with read_jsonl(HANDWRITTEN); the rules of its answers
# are in data/tickets/README.md.
HANDWRITTEN = TICKETS_DIR / "handwritten.jsonl"

__all__ = [
    "HANDWRITTEN",
    "PreferenceDataError", "check_pairs", "corrected", "grpo_rows", "mistake_of", "pairs_table", "preference_pairs",
    "CleanConfig", "CleanResult", "DataFormatError", "DataReport", "LeakageReport", "SPLIT_NAMES", "SplitConfig",
    "TemplateError", "ValidationReport", "add_typos", "answer_of", "augment", "balance_report", "category_of",
    "check_leakage", "check_openai", "clean_file", "clean_rows", "convert", "corrupt_labels", "data_report", "detect_format",
    "detection_scores", "drop_order_id", "export_openai", "group_ids", "llm_rewrite", "load_split",
    "make_near_duplicates", "normalise_whitespace", "read_csv", "read_jsonl", "read_rows", "render_chat",
    "reorder_sentences", "scrub_pii", "split_path", "split_rows", "synthetic_share", "targeted_rows", "ticket_text", "to_messages",
    "to_openai", "to_prompt_completion", "to_text", "validate", "write_jsonl", "write_report",
    "DistillResult", "distill", "noisy_teacher", "rule_teacher", "screen_rows", "screen_scores", "screen_text",
    "turn_tokens",
]
