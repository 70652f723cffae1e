"""helpers.data.formats: read every format, convert between them, render with the chat template, OpenAI export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.data import (
    DataFormatError,
    check_openai,
    convert,
    detect_format,
    export_openai,
    generate,
    read_csv,
    read_jsonl,
    read_rows,
    render_chat,
    to_messages,
    to_prompt_completion,
)
from helpers.data.__main__ import main

FIXTURES = Path(__file__).parent / "fixtures" / "data"
ROW = generate.generate_tickets(n=3)[2]


@pytest.fixture(scope="module")
def tokenizer():
    from helpers.data.generate import pretraining_texts
    from helpers.build.tiny import TinyRecipe, train_tokenizer

    return train_tokenizer(pretraining_texts(200), TinyRecipe(vocab_size=350))


def test_detect_format():
    assert detect_format(ROW) == "messages"
    assert detect_format({"prompt": "a", "completion": "b"}) == "prompt_completion"
    assert detect_format({"text": "a"}) == "text"
    with pytest.raises(DataFormatError, match="unknown row format"):
        detect_format({"input": "a"})


def test_messages_prompt_completion_round_trip():
    pc = to_prompt_completion(ROW)
    assert pc["prompt"] == ROW["messages"][1]["content"] and pc["system"] == generate.SYSTEM_PROMPT
    assert to_messages(pc) == ROW and json.loads(pc["completion"])["category"]


def test_multi_turn_needs_the_conversational_form():
    turns = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                          {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}
    with pytest.raises(DataFormatError, match="conversational=True"):
        to_prompt_completion(turns)
    pc = to_prompt_completion(turns, conversational=True)
    assert len(pc["prompt"]) == 3 and pc["completion"] == [{"role": "assistant", "content": "d"}]
    assert to_messages(pc) == turns


def test_read_csv_with_bom_and_quotes():
    rows = read_csv(FIXTURES / "prompt_completion.csv", system_prompt="S")
    assert [r["messages"][0] for r in rows] == [{"role": "system", "content": "S"}] * 2
    assert rows[0]["messages"][1]["content"] == "Hi, my order ORD-123456 is late"
    assert json.loads(rows[0]["messages"][2]["content"]) == {"category": "shipping"}


def test_csv_round_trip_through_the_cli(tmp_path, capsys):
    src = tmp_path / "rows.jsonl"
    src.write_text(json.dumps(ROW) + "\n", encoding="utf-8")
    assert main(["convert", str(src), "--to", "csv", "--out", str(tmp_path / "rows.csv")]) == 0
    back = read_rows(tmp_path / "rows.csv")
    assert back[0]["messages"] == ROW["messages"]


def test_json_array_file_converts_to_jsonl(tmp_path, capsys):
    out = tmp_path / "fixed.jsonl"
    assert main(["convert", str(FIXTURES / "json_array.jsonl"), "--out", str(out)]) == 0
    assert main(["validate", str(out)]) == 0 and capsys.readouterr().out.endswith("rows: 2, valid: 2, invalid: 0\n")


def test_read_jsonl_other_formats_and_bad_lines():
    assert read_jsonl(FIXTURES / "prompt_completion.jsonl") == [{"prompt": "hi", "completion": "yo"}]
    with pytest.raises(DataFormatError, match=r"not_json\.jsonl:2: not_json"):
        read_jsonl(FIXTURES / "not_json.jsonl")
    with pytest.raises(DataFormatError, match="split back into messages"):
        convert(read_jsonl(FIXTURES / "text.jsonl"), "messages")


def test_render_with_the_chat_template(tokenizer):
    text = render_chat(ROW["messages"], tokenizer)
    assert text.startswith("<|system|>\n" + generate.SYSTEM_PROMPT)
    assert text.endswith(ROW["messages"][2]["content"] + "<|end|>\n")
    prompt = render_chat(ROW["messages"][:2], tokenizer, add_generation_prompt=True)
    assert prompt.endswith("<|assistant|>\n") and text.startswith(prompt)
    assert convert([ROW], "text", tokenizer) == [{"text": text}]
    with pytest.raises(DataFormatError, match="needs a tokenizer"):
        convert([ROW], "text")


def test_openai_export_strips_metadata_and_passes_the_strict_check(tmp_path):
    weighted = {"messages": [*ROW["messages"][:2], {**ROW["messages"][2], "weight": 1}], "metadata": {"x": 1}}
    path = export_openai([ROW, weighted], tmp_path / "openai.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(set(r) == {"messages"} for r in rows) and rows[1]["messages"][2]["weight"] == 1
    assert check_openai(path).exit_code == 0
    assert check_openai(FIXTURES / "tokens.jsonl").codes() == []  # tool calls are in OpenAI's current format
    assert check_openai(FIXTURES / "unknown_key_top.jsonl").codes() == ["unknown_key"]
    with pytest.raises(DataFormatError, match="not accepted by OpenAI"):
        export_openai([{"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]}],
                      tmp_path / "bad.jsonl")
