"""Test-wide settings: offline, CPU profile, and a guard against a run that collected (almost) nothing."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download during tests, notebooks included
os.environ.setdefault("COURSE_PROFILE", "cpu-tiny")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Waiting OpenMP threads sleep instead of spinning (set before torch loads; notebook kernels inherit it): on a busy
# 2-core machine spinning threads made training steps ~30x slower, which is how CI timed out.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_sessionfinish(session, exitstatus):
    """With COURSE_MIN_TESTS set (make test sets it), fewer collected tests than that is a failure, not a pass."""
    minimum = int(os.environ.get("COURSE_MIN_TESTS", "0"))
    if minimum and session.testscollected < minimum and exitstatus == 0:
        print(f"\nerror: only {session.testscollected} tests collected, expected at least {minimum}")
        session.exitstatus = 1


@pytest.fixture(scope="session")
def random_llama(tmp_path_factory):
    """A builder of 2-layer random Llamas with the course tokenizer (the shipped tiny model's tokenizer and chat
    template), seconds to build: ``random_llama(**config_changes, generation={...})`` returns a new folder. The same
    seed every time, so equal arguments give equal weights."""

    def build(generation: dict | None = None, **changes) -> "os.PathLike":
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        from helpers.config import TINY_MODEL_DIR

        folder = tmp_path_factory.mktemp("rand-llama")
        tok = AutoTokenizer.from_pretrained(TINY_MODEL_DIR)
        torch.manual_seed(0)
        settings = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)
        model = LlamaForCausalLM(LlamaConfig(**{**settings, **changes}))
        for key, value in (generation or {}).items():
            setattr(model.generation_config, key, value)
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        return folder

    return build
