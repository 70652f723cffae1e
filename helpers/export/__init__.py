"""Ship the fine-tuned model: adapters, a verified 16-bit merge, a model card, JSON inference, the OpenAI path, GGUF.

Taught in 06_export. Nothing runs on import: torch, transformers and peft are imported inside the functions. One
module per step: ``merge``, ``verify``, ``card``, ``inference``, ``hosted`` (OpenAI), ``llamacpp`` (GGUF, Ollama); every
name stays importable from ``helpers.export``.

* Adapters are small: :func:`adapter_files` lists what a saved adapter holds, :func:`load_adapters` puts several on
  one base (switch with ``model.set_adapter(name)``, switch off with ``with model.disable_adapter():``).
* :func:`merge_to_16bit` folds an adapter into a full-precision copy of the base (never the 4-bit one) and saves it
  with the training chat template and the end/pad ids; :func:`verify_merge` proves the merged folder behaves like
  base + adapter (:class:`VerifyReport`, one named check per way a merge goes wrong).
* :func:`model_card` writes README.md with Hub front matter and no machine paths.
* :func:`generate_json` is the serving call: tickets in, parsed and checked JSON out, one item per ticket.
* :func:`openai_training_cost` and :data:`OPENAI_CODE` are the hosted alternative.

* :func:`to_gguf` runs llama.cpp's own converter (``convert_hf_to_gguf.py`` from the pinned llama-cpp-python 0.3.36
  source distribution, :func:`converter_dir`); :func:`verify_gguf` reads the file back against the merged weights;
  :func:`gguf_answers` runs it with llama.cpp (``make gguf``); :func:`ollama_modelfile` and :func:`check_modelfile`
  write and check Ollama's Modelfile. The converter knows hub tokenizers only: the ``cpu-tiny`` model's is refused.
"""

from helpers.export.merge import (
    ADAPTER_CONFIG, adapter_files, ADAPTER_WEIGHTS, _base_profile, CARD_NAME, ExportError, HALF_DTYPES, _ids,
    load_adapters, load_full_base, MERGE_DTYPES, merge_to_16bit, _refuse_quantized_checkpoint, _serving_tokenizer,
    set_end_ids, _with_id,
)
from helpers.export.verify import (
    _behaviour, _conversations, _greedy_check, _read_json, _sequence_logits, TOLERANCE, verify_merge, VerifyReport,
)
from helpers.export.card import (
    ABSOLUTE_PATH, _card_front_matter, _data_facts, _metric_table, model_card, portable_name, _run_facts,
)
from helpers.export.inference import (
    generate_json,
)
from helpers.export.hosted import (
    OPENAI_CODE, openai_training_cost, _token_counter, TOKENS_PER_MESSAGE, TOKENS_PER_ROW,
)
from helpers.export.llamacpp import (
    CHATML_OLLAMA, check_modelfile, _converter_cache, converter_dir, CONVERTER_PARTS, GENERATION_TAGS, gguf_answers,
    _gguf_field, GGUF_Q8_STEP, _gguf_token, GGUF_TYPES, GGUFError, LLAMA_CPP_SDIST, llama_cpp_sdist,
    LLAMA_CPP_SDIST_ENV_VAR, LLAMA_CPP_SDIST_SHA256, _llama_permute, ollama_modelfile, _render_jinja,
    _render_ollama, serving_template, _stage_for_gguf, to_gguf, verify_gguf,
)
