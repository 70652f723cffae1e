"""Base vs tuned: generation, metrics, A/B with CIs, judge, canaries, error analysis. Taught in 04_evaluation.

Everything here scores the course task (support ticket -> JSON with ``category``, ``product``, ``order_id``,
``priority``, ``summary``) with reference packages called directly: ``jsonschema`` for the schema, ``rouge-score``
(with a Unicode tokenizer: its default one drops every non-ASCII character), and ``sacrebleu`` for BLEU and chrF.
Nothing runs on import; torch and transformers are imported inside the functions that need them.

One module per topic; every public name is importable from ``helpers.evaluate`` (``evaluate.score``):

- ``common``: the answer's fields and :class:`EvaluationError`
- ``generation``: prompts/references/tickets from chat rows, :data:`DECODING`, batched greedy :func:`generate`
- ``metrics``: :func:`parse_json`, :func:`score_rows`, :func:`aggregate`, :func:`score` and the metric functions
- ``error_analysis``: :data:`ERROR_KINDS`, :func:`error_kinds`, :func:`error_table`, :func:`failure_groups`,
  :func:`group_counts`
- ``confusion``: :func:`category_confusion`, :func:`plot_confusion` (reference x predicted category counts)
- ``ab``: :func:`paired_bootstrap`, :func:`plot_ab`, and a change in words (:func:`describe_change`)
- ``judge``: the judge prompt, verdict parsing, :func:`judge_pairwise` and the judges
- ``canaries``: forgetting checks (:class:`Canary`, :func:`run_canaries`, :func:`default_canaries`)
- ``human``: :func:`human_eval_sheet`, :func:`same_form`, :func:`tells_apart`
- ``decision``: :func:`extend_decision_table`, 05's :func:`ship_rule` for a data fix
- ``baselines``: the majority answer, and accuracy split by whether the ticket names the value
- ``grounding``: extracted values the ticket does not contain (hallucinations)
- ``constrained``: JSON-schema-constrained generation (llguidance): the format guaranteed, not the content
- ``rewards``: verifiable rewards for GRPO (schema, fields, grounding) and their weighted total (07)
- ``meteor``: METEOR of the summaries offline (exact + Porter-stem stages; no WordNet synonyms)
- ``monitor``: production monitoring, input drift and output health of a week against a reference window (06)
- ``live_ab``: live A/B tests of model versions: sample size, two-proportion test, the peeking pitfall (06)
- ``forgetting``: the cross-entropy of general text (:func:`text_loss`), forgetting as a number (05_iterate)
- ``ledger``: the only way notebooks read the test split (:func:`test_split`), and the ledger of those reads (05)

A new topic is a new module plus one ``from helpers.evaluate.<module> import ...`` line below.
"""

from helpers.evaluate.common import FIELD_KEYS, INVALID, SUMMARY_KEY, EvaluationError
from helpers.evaluate.generation import (
    DECODING,
    conversations_from_rows,
    decoding_kwargs,
    default_batch_size,
    generate,
    references_from_rows,
    tickets_from_rows,
)
from helpers.evaluate.error_analysis import (
    ERROR_KINDS,
    FIELD_ERRORS,
    error_kinds,
    error_table,
    failure_groups,
    group_counts,
    reference_group,
)
from helpers.evaluate.metrics import (
    CORPUS_METRICS,
    METRIC_DOCS,
    PER_EXAMPLE_METRICS,
    UnicodeTokenizer,
    aggregate,
    macro_f1,
    parse_json,
    rouge_l,
    score,
    score_rows,
    token_f1,
    unicode_tokens,
)
from helpers.evaluate.confusion import category_confusion, plot_confusion
from helpers.evaluate.ab import describe_change, paired_bootstrap, plot_ab, significant_changes
from helpers.evaluate.judge import (
    JUDGE_RUBRIC,
    ModelJudge,
    ReferenceFieldJudge,
    judge_pairwise,
    judge_prompt,
    model_judge,
    parse_verdict,
    prompt_sections,
)
from helpers.evaluate.canaries import (
    CONTINUATIONS,
    FLUENCY_SENTENCES,
    INSTRUCTIONS,
    Canary,
    canary_regressions,
    default_canaries,
    run_canaries,
)
from helpers.evaluate.human import NOT_JSON, RUBRIC_COLUMNS, human_eval_sheet, same_form, tells_apart
from helpers.evaluate.decision import SHIP_MAX_DROP, extend_decision_table, ship_rule
from helpers.evaluate.baselines import (
    NAMED_RULES,
    breakdown_table,
    field_breakdown,
    majority_answer,
    majority_outputs,
    names_it,
)
from helpers.evaluate.grounding import (
    GROUNDED_FIELDS,
    grounding_records,
    grounding_report,
    is_grounded,
    ungrounded_examples,
)
from helpers.evaluate.constrained import (
    ConstrainedGenerationError,
    ConstrainedOutputs,
    allowed_next,
    constrained_generate,
)
from helpers.evaluate.forgetting import GENERAL_TEXTS, text_loss
from helpers.evaluate.ledger import ledger_markdown, ledger_path, ledger_table, note_read, read_ledger, test_split
from helpers.evaluate.meteor import NO_SYNONYMS, meteor, meteor_parts
from helpers.evaluate.monitor import (
    MATERIAL,
    STATISTICS,
    Monitor,
    MonitorError,
    fit_monitor,
    plot_retraining,
    psi,
    simulate_week,
)
from helpers.evaluate.live_ab import (
    arm_outcomes,
    sample_size_per_arm,
    simulate_peeking,
    simulated_power,
    split_traffic,
    two_proportion_test,
)
from helpers.evaluate.rewards import (
    REWARD_FUNCS,
    REWARD_WEIGHTS,
    completion_text,
    field_reward,
    grounding_penalty,
    json_reward,
    reward_table,
    sampled_reward,
    schema_reward,
)
