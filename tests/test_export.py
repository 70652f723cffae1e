"""Tests of helpers.export on a random-initialised 2-layer Llama with the course tokenizer (seconds per test)."""

from __future__ import annotations

import ast
import inspect
import json
import shutil
import typing
from pathlib import Path

import pytest

from helpers import config, export, train
from helpers.config import TINY_MODEL_DIR
from helpers.data.generate import SYSTEM_PROMPT, TICKET_SCHEMA, generate_tickets
from helpers.export import ExportError

TICKETS = [
    "Hi, my order ORD-123456 arrived broken, the PulseBuds do not charge. Please send a new pair.",
    "I was charged twice for my Nimbus Cloud Plan this month.",
    "How do I reset the password of my account?",
    "The Vista 27 Monitor flickers since yesterday, urgent please.",
]
MACHINE_PATHS = ("/work", "/home", "/tmp", "/content")


@pytest.fixture(scope="module")
def tiny_dir(random_llama) -> Path:
    """A 2-layer random Llama with the course tokenizer (the shipped tiny model's tokenizer and chat template)."""
    return random_llama(initializer_range=0.2, generation={"do_sample": False, "max_new_tokens": 64})


def tiny_cfg(folder: Path) -> config.Profile:
    return config.get_profile("cpu-tiny").replace(model_id=str(folder), lora_r=4, lora_alpha=8)


def _make_adapter(tiny_dir: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter whose B matrices are random (a trained adapter's B is non-zero too), saved like train_adapter."""
    import torch
    from peft import get_peft_model

    from helpers.models import load_model, load_tokenizer

    cfg = tiny_cfg(tiny_dir)
    model = get_peft_model(load_model(cfg, quantized=False), train.lora_config(cfg))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    model.save_pretrained(out)
    load_tokenizer(tiny_dir, log=lambda _m: None).save_pretrained(out)
    train.portable_adapter_config(out)
    return out


@pytest.fixture(scope="module")
def adapters(tiny_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {"a": _make_adapter(tiny_dir, root / "a", 1), "b": _make_adapter(tiny_dir, root / "b", 2)}


@pytest.fixture(scope="module")
def merged_a(tiny_dir, adapters, tmp_path_factory) -> Path:
    return export.merge_to_16bit(tiny_cfg(tiny_dir), adapters["a"], tmp_path_factory.mktemp("merged") / "merged-a")


def _logits(model, tokenizer, ticket: str = TICKETS[0]):
    import torch

    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": ticket}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                        return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits


def _copy_merged(merged: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(merged, tmp_path / "edited"))


# ---------------------------------------------------------------------------------------------------- adapters


def test_adapter_files_are_the_small_shippable_folder(adapters, tmp_path):
    files = export.adapter_files(adapters["a"])
    assert {"adapter_config.json", "adapter_model.safetensors", "chat_template.jinja", "tokenizer.json"} <= set(files)
    assert json.loads(files["adapter_config.json"])["r"] == 4
    assert files["adapter_model.safetensors"] == (adapters["a"] / "adapter_model.safetensors").read_bytes()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match=r"adapter_config.json, adapter_model.safetensors missing"):
        export.adapter_files(tmp_path / "empty")


def test_two_adapters_on_one_base_switch_and_switch_off(tiny_dir, adapters):
    import torch

    from helpers.evaluate import generate
    from helpers.models import load_model, load_tokenizer

    cfg, tokenizer = tiny_cfg(tiny_dir), load_tokenizer(tiny_dir, log=lambda _m: None)
    bare = _logits(load_model(cfg, quantized=False), tokenizer)
    model = export.load_adapters(load_model(cfg, quantized=False), adapters)
    assert set(model.peft_config) == {"a", "b"} and model.active_adapter == "a"
    convs = export._conversations(TICKETS)
    logits_a, out_a = _logits(model, tokenizer), generate(model, tokenizer, convs, 12, progress=False)
    model.set_adapter("b")
    logits_b, out_b = _logits(model, tokenizer), generate(model, tokenizer, convs, 12, progress=False)
    assert (logits_a - logits_b).abs().max() > 1.0, "two different adapters should change the logits"
    assert out_a != out_b, "two different adapters should change the greedy answers"
    with model.disable_adapter():
        assert torch.equal(_logits(model, tokenizer), bare), "adapters off must be the bare base, bit for bit"
    assert torch.equal(_logits(model, tokenizer), logits_b), "leaving disable_adapter() restores the active adapter"
    with pytest.raises(ExportError, match="no adapters"):
        export.load_adapters(load_model(cfg, quantized=False), {})


# ---------------------------------------------------------------------------------------------------- merge


def test_merge_writes_a_standalone_model_with_template_and_end_ids(tiny_dir, adapters, merged_a):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (merged_a / "model.safetensors").is_file() and not (merged_a / "adapter_config.json").exists()
    assert (merged_a / "chat_template.jinja").read_text() == (adapters["a"] / "chat_template.jinja").read_text()
    tok = AutoTokenizer.from_pretrained(merged_a)
    gen = json.loads((merged_a / "generation_config.json").read_text())
    cfg = json.loads((merged_a / "config.json").read_text())
    assert gen["eos_token_id"] == cfg["eos_token_id"] == tok.eos_token_id
    assert gen["pad_token_id"] == cfg["pad_token_id"] == tok.pad_token_id != tok.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(merged_a)
    assert not any("lora" in name for name, _ in model.named_parameters()), "merge_and_unload leaves no LoRA layer"


def test_merge_writes_the_tokenizer_end_ids_where_the_base_has_others(tiny_dir, adapters, tmp_path):
    """Like a hub base (Qwen2.5: no pad id in config.json, another end token in generation_config.json)."""
    base = Path(shutil.copytree(tiny_dir, tmp_path / "hub-like"))
    raw = json.loads((base / "config.json").read_text())
    raw.pop("pad_token_id")
    (base / "config.json").write_text(json.dumps(raw))
    gen = json.loads((base / "generation_config.json").read_text())
    gen.pop("pad_token_id")
    gen["eos_token_id"] = 7
    (base / "generation_config.json").write_text(json.dumps(gen))
    merged = export.merge_to_16bit(base, adapters["a"], tmp_path / "merged")
    saved_gen = json.loads((merged / "generation_config.json").read_text())
    saved_cfg = json.loads((merged / "config.json").read_text())
    assert saved_gen["eos_token_id"] == [0, 7] and saved_gen["pad_token_id"] == 1, "tokenizer's EOS first, base's kept"
    assert saved_cfg["eos_token_id"] == 0 and saved_cfg["pad_token_id"] == 1
    report = export.verify_merge(base, adapters["a"], merged, TICKETS[:2])
    assert report.passed, str(report)


def test_merge_refuses_a_quantized_base(tiny_dir, adapters, tmp_path):
    with pytest.raises(ExportError, match="never a 4- or 8-bit"):
        export.merge_to_16bit(tiny_cfg(tiny_dir), adapters["a"], tmp_path / "m", dtype="int4")
    with pytest.raises(ExportError, match="not a loaded"):
        export.merge_to_16bit(object(), adapters["a"], tmp_path / "m")
    quantized = Path(shutil.copytree(tiny_dir, tmp_path / "bnb-4bit"))
    raw = json.loads((quantized / "config.json").read_text())
    raw["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}
    (quantized / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ExportError, match=r"saved quantized \(bitsandbytes\).*16-bit checkpoint"):
        export.merge_to_16bit(quantized, adapters["a"], tmp_path / "m")
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------------------------------------------- verify


def test_verify_passes_on_a_correct_merge(tiny_dir, adapters, merged_a):
    report = export.verify_merge(tiny_cfg(tiny_dir), adapters["a"], merged_a, TICKETS)
    assert report.passed, str(report)
    assert set(report.checks) == {"greedy_outputs_identical", "max_logit_diff", "chat_template_preserved",
                                  "eos_pad_preserved", "generation_config_preserved"}
    assert report.numbers["relative_logit_diff"] < export.TOLERANCE["float32"] and report.numbers["logit_scale"] > 1
    assert report.raise_if_failed() is report
    print(f"fp32 merge: max |logit diff| {report.numbers['max_logit_diff']:.2e}, "
          f"{report.numbers['relative_logit_diff']:.2e} of the scale {report.numbers['logit_scale']:.2f}")


def test_a_half_precision_merge_verifies_with_its_dtype_tolerance(tiny_dir, adapters, tmp_path):
    merged = export.merge_to_16bit(tiny_cfg(tiny_dir), adapters["a"], tmp_path / "bf16", dtype="bfloat16")
    assert json.loads((merged / "config.json").read_text())["dtype"] == "bfloat16"
    report = export.verify_merge(tiny_cfg(tiny_dir), adapters["a"], merged, TICKETS, dtype="bfloat16")
    print(str(report))
    assert report.passed, str(report)
    assert export.TOLERANCE["float32"] < report.numbers["relative_logit_diff"] <= export.TOLERANCE["bfloat16"]
    wrong = export.verify_merge(tiny_cfg(tiny_dir), adapters["b"], merged, TICKETS, dtype="bfloat16")
    assert {"max_logit_diff", "greedy_outputs_identical"} <= set(wrong.failed), "bf16 must still tell the adapters apart"


def test_verify_names_the_wrong_adapter(tiny_dir, adapters, merged_a):
    report = export.verify_merge(tiny_cfg(tiny_dir), adapters["b"], merged_a, TICKETS)
    assert {"max_logit_diff", "greedy_outputs_identical"} <= set(report.failed)
    assert "chat_template_preserved" not in report.failed and "eos_pad_preserved" not in report.failed
    assert report.numbers["relative_logit_diff"] > 100 * export.TOLERANCE["float32"]
    with pytest.raises(ExportError, match=r"max_logit_diff: max \|diff\|.*tolerance 0.0001"):
        report.raise_if_failed()


def test_verify_names_a_dropped_chat_template(tiny_dir, adapters, merged_a, tmp_path):
    edited = _copy_merged(merged_a, tmp_path)
    (edited / "chat_template.jinja").unlink()
    report = export.verify_merge(tiny_cfg(tiny_dir), adapters["a"], edited, TICKETS[:2])
    assert report.failed == ["chat_template_preserved"], str(report)
    assert "missing" in report.checks["chat_template_preserved"][1]
    (edited / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    report = export.verify_merge(tiny_cfg(tiny_dir), adapters["a"], edited, TICKETS[:2])
    assert report.failed == ["chat_template_preserved"] and "differs" in report.checks["chat_template_preserved"][1]


def test_verify_names_a_changed_eos_and_generation_default(tiny_dir, adapters, merged_a, tmp_path):
    edited = _copy_merged(merged_a, tmp_path)
    gen_path = edited / "generation_config.json"
    gen = json.loads(gen_path.read_text())
    gen.update(eos_token_id=7, repetition_penalty=1.1)
    gen_path.write_text(json.dumps(gen))
    report = export.verify_merge(tiny_cfg(tiny_dir), adapters["a"], edited, TICKETS[:2])
    assert {"eos_pad_preserved", "generation_config_preserved"} <= set(report.failed)
    assert "generation_config.json eos_token_id 7 lacks 0" in report.checks["eos_pad_preserved"][1]
    assert "repetition_penalty None -> 1.1" in report.checks["generation_config_preserved"][1]
    with pytest.raises(ExportError, match="eos_pad_preserved.*generation_config_preserved"):
        report.raise_if_failed()

    edited = _copy_merged(merged_a, tmp_path / "c")
    raw = json.loads((edited / "config.json").read_text())
    raw["eos_token_id"] = 7
    (edited / "config.json").write_text(json.dumps(raw))
    report = export.verify_merge(tiny_cfg(tiny_dir), adapters["a"], edited, TICKETS[:2])
    assert report.failed == ["eos_pad_preserved"], str(report)
    assert "config.json eos_token_id 7 lacks 0" in report.checks["eos_pad_preserved"][1]


# ---------------------------------------------------------------------------------------------------- model card


def _manifest(tiny_dir: Path, adapter_dir: Path, tmp_path: Path) -> dict:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in generate_tickets(5)))
    cfg = tiny_cfg(tiny_dir)
    validation = {"train": {"rows": 5, "mean_tokens": 120.0, "mean_trained_tokens": 40.0, "truncated": 0}}
    metrics = {"global_step": 6, "final_train_loss": 1.23, "best_eval_loss": 1.4,
               "best_checkpoint": str(tmp_path / "checkpoints" / "checkpoint-6")}
    path = train.write_manifest(adapter_dir, cfg, {"lora": train.lora_config(cfg), "bnb": None,
                                                   "sft": {"learning_rate": 3e-3, "assistant_only_loss": True}},
                                [data], validation, metrics, 12.5)
    return json.loads(path.read_text())


def test_model_card_front_matter_facts_and_no_machine_paths(tiny_dir, adapters, merged_a, tmp_path):
    from huggingface_hub import ModelCard

    adapter = Path(shutil.copytree(adapters["a"], tmp_path / "adapter"))
    manifest = _manifest(tiny_dir, adapter, tmp_path)
    assert any(p in json.dumps(manifest) for p in MACHINE_PATHS), "the test manifest should hold machine paths"
    metrics = {"json_valid": {"tuned": 0.97, "base": 0.0}, "field_accuracy": {"tuned": 0.65, "majority answer": 0.445}}
    merged = _copy_merged(merged_a, tmp_path)
    card = export.model_card(manifest, metrics, str(tiny_dir), merged, datasets=["synthetic-support-tickets"])
    data = ModelCard.load(card).data
    assert data.library_name == "transformers" and data.license == "apache-2.0"
    assert data.base_model == tiny_dir.name and data.datasets == ["synthetic-support-tickets"]
    assert sorted(data.metrics) == ["field_accuracy", "json_valid"] and "lora" in data.tags
    text = card.read_text()
    for fact in ("## Intended use", "## Limits", "rank 4, alpha 8", "6 optimizer steps", "train: 5 rows",
                 "file `train.jsonl`", "| field_accuracy | 0.650 |  | 0.445 |", "seed 42"):
        assert fact in text, fact
    for path in merged.rglob("*"):
        if path.suffix in (".json", ".jinja", ".md", ".txt"):
            leaked = [p for p in MACHINE_PATHS if p in path.read_text()]
            assert not leaked, f"{path.name} holds a machine path {leaked}"

    card = export.model_card(manifest, {}, "Qwen/Qwen2.5-1.5B-Instruct", adapter)
    data = ModelCard.load(card).data
    assert data.library_name == "peft" and data.base_model == "Qwen/Qwen2.5-1.5B-Instruct"
    assert not any(p in card.read_text() for p in MACHINE_PATHS)
    with pytest.raises(ExportError, match="neither an adapter"):
        export.model_card(manifest, {}, "x", tmp_path)


# ---------------------------------------------------------------------------------------------------- inference


def test_generate_json_one_item_per_ticket_on_a_random_model(tiny_dir):
    from jsonschema import Draft202012Validator

    from helpers.models import load_model, load_tokenizer

    model, tok = load_model(tiny_cfg(tiny_dir), quantized=False), load_tokenizer(tiny_dir, log=lambda _m: None)
    for schema in (None, TICKET_SCHEMA):
        items = export.generate_json(model, tok, TICKETS, max_new_tokens=24, schema=schema, batch_size=3)
        assert len(items) == len(TICKETS)
        for item in items:
            assert set(item) == {"ok", "value", "error", "raw"} and isinstance(item["raw"], str)
            assert item["ok"] == (item["value"] is not None) == (item["error"] is None)
            if item["ok"]:
                assert not list(Draft202012Validator(TICKET_SCHEMA).iter_errors(item["value"]))
        if schema is None:
            assert not any(item["ok"] for item in items), "a random model writes no valid ticket JSON"
            assert all(item["error"].startswith(("not JSON", "schema", "a JSON")) for item in items)
        else:  # 24 tokens cannot hold a whole answer: every one is cut, and says so
            assert all("cut at max_new_tokens=24" in item["error"] for item in items)


def test_generate_json_parses_and_checks_each_answer(monkeypatch):
    import helpers.evaluate.generation as generation

    good = {"summary": "Broken earbuds", "category": "returns", "product": "PulseBuds", "order_id": "ORD-123456",
            "priority": "high"}
    raws = [json.dumps(good), "Sure! Here is", "[1, 2]", json.dumps({**good, "category": "refund"})]
    monkeypatch.setattr(generation, "generate", lambda *a, **k: raws)
    items = export.generate_json(object(), object(), ["t1", "t2", "t3", "t4"], max_new_tokens=8)
    assert [i["ok"] for i in items] == [True, False, False, False]
    assert items[0]["value"] == good and items[0]["raw"] == raws[0]
    assert items[1]["error"].startswith("not JSON") and items[2]["error"] == "a JSON list, not an object"
    assert items[3]["error"].startswith("schema: 'refund' is not one of")
    with pytest.raises(ExportError, match="list of strings"):
        export.generate_json(object(), object(), "one ticket", max_new_tokens=8)


def test_the_shipped_tiny_model_alone_writes_no_json():
    from helpers.models import load_model, load_tokenizer

    cfg = config.get_profile("cpu-tiny")
    items = export.generate_json(load_model(cfg, quantized=False), load_tokenizer(cfg, log=lambda _m: None),
                                 TICKETS[:2], max_new_tokens=32)
    assert len(items) == 2 and not any(item["ok"] for item in items)
    assert all(item["error"] and item["raw"] for item in items)


# ---------------------------------------------------------------------------------------------------- OpenAI


def test_openai_cost_counts_tokens_epochs_and_price():
    rows = generate_tickets(3)
    words = lambda text: len(text.split())  # noqa: E731 - a stand-in tokenizer: one token per word
    expected = sum(export.TOKENS_PER_ROW + sum(export.TOKENS_PER_MESSAGE + words(m["content"]) for m in r["messages"])
                   for r in rows)
    cost = export.openai_training_cost(rows, words, epochs=3, price_per_million=25.0, price_date="2026-01-15")
    assert cost["rows"] == 3 and cost["tokens_per_epoch"] == expected and cost["billed_tokens"] == 3 * expected
    assert cost["cost_usd"] == round(3 * expected * 25.0 / 1e6, 4) and "estimate" in cost["note"]
    from helpers.models import load_tokenizer

    with_tokenizer = export.openai_training_cost(rows, load_tokenizer(TINY_MODEL_DIR, log=lambda _m: None), 1, 25.0,
                                                 "2026-01-15")
    assert with_tokenizer["tokens_per_epoch"] > expected  # a 4 k-token vocabulary splits words into pieces
    with pytest.raises(ExportError, match="YYYY-MM-DD"):
        export.openai_training_cost(rows, words, 1, 25.0, "today")
    with pytest.raises(ExportError, match="epochs=0"):
        export.openai_training_cost(rows, words, 0, 25.0, "2026-01-15")


def _client_calls(code: str) -> list[ast.Call]:
    """Every call ``client.<...>(...)`` in the code."""
    calls = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            root = node.func
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id == "client":
                calls.append(node)
    return calls


def _typed_dict_keys(hint: typing.Any) -> set[str]:
    return set(typing.get_type_hints(hint))


def test_openai_code_uses_only_keywords_the_client_accepts():
    openai = pytest.importorskip("openai")
    from openai.types.fine_tuning import job_create_params, supervised_hyperparameters_param, supervised_method_param

    client = openai.OpenAI(api_key="test")  # no request is made
    used = {}
    for call in _client_calls(export.OPENAI_CODE):
        name = ast.unparse(call.func)
        method = eval(name, {"client": client})  # noqa: S307 - an attribute chain of our own constant
        params = inspect.signature(method).parameters
        unknown = [k.arg for k in call.keywords if k.arg not in params]
        assert not unknown, f"{name}() has no keyword {unknown} in openai {openai.__version__}"
        positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        assert len(call.args) <= len(positional), f"{name}() takes no {len(call.args)} positional arguments"
        used[name] = call
    assert set(used) == {"client.files.create", "client.fine_tuning.jobs.create", "client.fine_tuning.jobs.retrieve",
                         "client.fine_tuning.jobs.list_events", "client.chat.completions.create"}
    purpose = next(k.value.value for k in used["client.files.create"].keywords if k.arg == "purpose")
    assert purpose in typing.get_args(typing.get_type_hints(openai.resources.files.Files.create)["purpose"])
    method = ast.literal_eval(ast.unparse(next(k.value for k in used["client.fine_tuning.jobs.create"].keywords
                                               if k.arg == "method")).replace("OPENAI_EPOCHS", "3"))
    assert set(method) <= _typed_dict_keys(job_create_params.Method)
    assert set(method["supervised"]) <= _typed_dict_keys(supervised_method_param.SupervisedMethodParam)
    assert set(method["supervised"]["hyperparameters"]) <= _typed_dict_keys(
        supervised_hyperparameters_param.SupervisedHyperparametersParam)


def test_openai_code_runs_against_a_mock_server(tmp_path, monkeypatch):
    openai = pytest.importorskip("openai")
    import httpx

    job = {"id": "ftjob-1", "object": "fine_tuning.job", "model": "gpt-4o-mini", "status": "succeeded",
           "created_at": 0, "fine_tuned_model": "ft:gpt-4o-mini:org:support-tickets:1", "training_file": "file-1",
           "validation_file": "file-1", "result_files": [], "seed": 42, "organization_id": "org", "hyperparameters": {}}
    requests = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append((request.method, request.url.path, request.content))
        path = request.url.path
        if path.endswith("/files"):
            return httpx.Response(200, json={"id": "file-1", "object": "file", "bytes": 3, "created_at": 0,
                                             "filename": "f.jsonl", "purpose": "fine-tune", "status": "processed"})
        if path.endswith("/events"):
            return httpx.Response(200, json={"object": "list", "data": [], "has_more": False})
        if "/fine_tuning/jobs" in path:
            return httpx.Response(200, json=job)
        return httpx.Response(200, json={"id": "c", "object": "chat.completion", "created": 0, "model": job[
            "fine_tuned_model"], "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": '{"category": "returns"}'}}]})

    real = openai.OpenAI
    monkeypatch.setattr(openai, "OpenAI", lambda: real(api_key="test", base_url="https://mock.invalid/v1",
                                                       http_client=httpx.Client(transport=httpx.MockTransport(handler))))
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("{}\n")
    namespace = {"OPENAI_TRAIN_FILE": train_file, "OPENAI_VALIDATION_FILE": train_file, "SEED": 42,
                 "OPENAI_BASE_MODEL": "gpt-4o-mini", "OPENAI_EPOCHS": 3, "SYSTEM_PROMPT": SYSTEM_PROMPT,
                 "TICKET": TICKETS[0]}
    exec(compile(export.OPENAI_CODE, "OPENAI_CODE", "exec"), namespace)  # noqa: S102 - our own constant
    paths = [(m, p.removeprefix("/v1")) for m, p, _ in requests]
    assert paths == [("POST", "/files"), ("POST", "/files"), ("POST", "/fine_tuning/jobs"),
                     ("GET", "/fine_tuning/jobs/ftjob-1"), ("GET", "/fine_tuning/jobs/ftjob-1/events"),
                     ("POST", "/chat/completions")]
    created = json.loads(requests[2][2])
    assert created["method"] == {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3}}}
    assert json.loads(requests[5][2])["model"].startswith("ft:")


def test_notebook_06_shows_exactly_the_checked_openai_code():
    """The skip-execution cell of 06 is OPENAI_CODE (checked above against the client) after its three setup lines."""
    import nbformat

    from helpers.config import NOTEBOOKS_DIR

    nb = nbformat.read(NOTEBOOKS_DIR / "06_export.ipynb", as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code" and "client.fine_tuning.jobs.create" in c.source]
    assert len(cells) == 1 and cells[0].rstrip().endswith(export.OPENAI_CODE.rstrip())
    tags = [c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code" and c.source == cells[0]]
    assert "skip-execution" in tags[0], "the billed calls never run in the course"
