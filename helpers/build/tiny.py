"""Build the course's embedded tiny model (``data/tiny-llama``): corpus, tokenizer, pretraining, model card.

Not imported by the notebooks: ``python -m helpers.build.tiny`` (or ``python -m helpers.models build-tiny``) runs it
once, on any machine, from text the project derives itself (the Python standard library's docstrings, support
threads from the ticket generator and, with ``copy_documents``, short documents that repeat random identifiers).
"""

from __future__ import annotations

import argparse
import ast
import csv
import inspect
import json
import math
import platform
import random
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers.checksums import sha256
from helpers.cli import path_arg
from helpers.config import TINY_MODEL_DIR, unwritable_folder
from helpers.data.generate import NAMES, ORDER_FORMATS, PRODUCTS, STREETS, SURNAMES, make_ticket, pretraining_texts
from helpers.templates import CHAT_TEMPLATE, EOS, PAD, SPECIAL_TOKENS

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class TinyRecipe:
    """Everything that decides the embedded tiny model: architecture, tokenizer and pretraining run."""

    seed: int = 1234
    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 704
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2  # grouped-query attention, as in Llama 3
    max_position_embeddings: int = 1024
    seq_len: int = 256
    batch_size: int = 16
    steps: int = 1000
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.1
    heldout_fraction: float = 0.02
    ticket_texts: int = 8000
    digit_groups: int = 0  # 0: BPE merges digits as it likes; n: numbers split in groups of <= n digits from the left
    copy_documents: int = 0  # short documents in which random ids, names and numbers recur (copying practice)
    induction_steps: int = 0  # warm-up steps on random token spans said twice, before the corpus (see induction_batch)
    induction_batch: int = 32
    induction_len: int = 64


def stdlib_docstrings(min_chars: int = 30) -> list[str]:
    """English text from the standard library: module, class and function docstrings, read with ``ast``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo", "ensurepip", "tkinter"}
    texts: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if skip & set(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef))]
        for node in nodes:
            doc = ast.get_docstring(node)
            if doc and len(doc) >= min_chars:
                texts.append(inspect.cleandoc(doc))
    return texts


def tiny_corpus(recipe: TinyRecipe) -> list[str]:
    """The pretraining documents: stdlib docstrings plus unlabelled tickets, shuffled with the recipe's seed."""
    docs = stdlib_docstrings() + pretraining_texts(recipe.ticket_texts)
    copy_rng = random.Random(recipe.seed + 1)
    docs += [copy_document(copy_rng) for _ in range(recipe.copy_documents)]
    random.Random(recipe.seed).shuffle(docs)
    return docs


def train_tokenizer(docs: list[str], recipe: TinyRecipe) -> "PreTrainedTokenizerBase":
    """A byte-level BPE tokenizer with the chat special tokens and the course chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if recipe.digit_groups:  # "order no. 738000" and "ORD-738000" both hold the tokens 738, 000: copyable
        groups = pre_tokenizers.Split(Regex(rf"\d{{1,{recipe.digit_groups}}}"), behavior="isolated")
        tok.pre_tokenizer = pre_tokenizers.Sequence([groups, byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.vocab_size, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=PAD, bos_token="<|bos|>", unk_token=None,
        model_max_length=recipe.max_position_embeddings, padding_side="right",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _blocks(docs: list[str], tokenizer: "PreTrainedTokenizerBase", seq_len: int) -> "Any":
    """Pack documents (each ended by <|end|>) into rows of ``seq_len + 1`` token ids."""
    import torch

    ids: list[int] = []
    tokenizer.model_max_length = 10**9  # whole documents are packed, not fed to the model as they are
    for start in range(0, len(docs), 512):
        for row in tokenizer(docs[start:start + 512], add_special_tokens=False)["input_ids"]:
            ids.extend(row + [tokenizer.eos_token_id])
    n = len(ids) // (seq_len + 1)
    return torch.tensor(ids[: n * (seq_len + 1)]).view(n, seq_len + 1)


def _heldout_loss(model: Any, blocks: Any, batch: int) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(blocks), batch):
            x = blocks[i:i + batch]
            out = model(input_ids=x[:, :-1], labels=x[:, :-1])
            total += out.loss.item() * len(x)
            count += len(x)
    model.train()
    return total / max(count, 1)


def _digits(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(rng.randint(lo, hi)))


def _code(rng: random.Random) -> str:
    letters = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(rng.randint(1, 3)))
    return letters + rng.choice(("-", "", " ")) + _digits(rng, 3, 7)


def copy_document(rng: random.Random) -> str:
    """One short document in which random identifiers recur and must be repeated: a record restated, an order number
    normalised to ``ORD-``, a fact looked up among others, or a list said twice. Copying an arbitrary string is an
    in-context skill a small model learns only from text that rewards it."""
    kind = rng.random()
    name = f"{rng.choice(NAMES)} {rng.choice(SURNAMES)}"
    if kind < 0.3:
        account, case, street = _digits(rng, 5, 8), _code(rng), f"{rng.randrange(1, 300)} {rng.choice(STREETS)}"
        product = rng.choice(sorted(PRODUCTS))
        return (f"Customer: {name}. Account {account}. Case {case}. Product: {product}. Address: {street}.\n"
                f"Confirmed: {name}, account {account}, case {case}, {product}, {street}.")
    if kind < 0.55:
        n = f"{rng.randrange(100000, 1000000)}"
        said = rng.choice(ORDER_FORMATS).format(id=f"ORD-{n}", n=n)
        return rng.choice(("The customer wrote \"{s}\". In our system that is ORD-{n}.",
                           "Ticket mentions {s} -> order ORD-{n}", "{s}: looked up as ORD-{n}, status shipped.",
                           "Re: {s}\nWe located ORD-{n} in the order system.")).format(s=said, n=n)
    if kind < 0.8:
        items = [(rng.choice(sorted(PRODUCTS)), f"{rng.randrange(100000, 1000000)}") for _ in range(rng.randint(2, 4))]
        product, n = rng.choice(items)
        return " ".join(f"Order {m} is the {p}." for p, m in items) + f" Which order is the {product}? Order {n}."
    seq = [_digits(rng, 2, 7) if rng.random() < 0.6 else _code(rng) for _ in range(rng.randint(3, 8))]
    return "List: " + ", ".join(seq) + ".\nAgain: " + ", ".join(seq) + "."


def induction_batch(generator: Any, batch: int, length: int, low: int, high: int) -> Any:
    """Rows of random tokens in which one random span (8-29 tokens) occurs twice: the second copy can only be predicted
    by finding the first and copying what followed it, the in-context *induction* skill that copying an order id
    needs. An option of the recipe (``induction_steps``), off by default: measured for issue 11, 2,000 steps of it
    left this 4-layer model's loss at chance (the skill did not form), and the copy probe stayed at 0."""
    import torch

    n = int(torch.randint(8, 30, (1,), generator=generator))
    span = torch.randint(low, high, (batch, n), generator=generator)
    filler = torch.randint(low, high, (batch, length - 2 * n), generator=generator)
    cut = int(torch.randint(0, length - 2 * n + 1, (1,), generator=generator))
    return torch.cat([filler[:, :cut], span, filler[:, cut:], span], dim=1)


def copy_probe(model: Any, tokenizer: Any, n: int = 60, seed: int = 4242) -> float:
    """Share of fresh support threads (not in the corpus) whose order id the model continues correctly after the
    agent writes ``I found order ORD-``: pretraining's own measure of whether the model can copy from a ticket."""
    import re

    import torch

    rng, probes = random.Random(seed), []
    while len(probes) < n:
        ticket = make_ticket(rng, 0)
        if ticket.answer["order_id"]:
            probes.append((f"{ticket.text}\n\nAgent reply:\nThanks for contacting us. I found order ORD-",
                           ticket.answer["order_id"][4:]))
    model.eval()
    hits = 0
    with torch.no_grad():
        for prompt, digits in probes:
            ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            out = model.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            text = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
            hits += re.sub(r"\D", "", text)[:6] == digits
    model.train()
    return hits / len(probes)


def build_tiny(out_dir: Path = TINY_MODEL_DIR, recipe: TinyRecipe = TinyRecipe(), log=print) -> dict[str, Any]:
    """Pretrain the embedded tiny Llama from scratch and save it with its recipe, log and checksums."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    started = time.time()
    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)
    docs = tiny_corpus(recipe)
    n_held = max(1, int(len(docs) * recipe.heldout_fraction))
    held_docs, train_docs = docs[:n_held], docs[n_held:]
    log(f"corpus: {len(docs)} documents, {sum(map(len, docs)) / 1e6:.1f} M characters")
    tokenizer = train_tokenizer(train_docs, recipe)
    train_blocks = _blocks(train_docs, tokenizer, recipe.seq_len)
    held_blocks = _blocks(held_docs, tokenizer, recipe.seq_len)
    log(f"tokens: {train_blocks.numel() / 1e6:.2f} M train, {held_blocks.numel() / 1e3:.0f} k held-out")

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=recipe.hidden_size, intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_hidden_layers, num_attention_heads=recipe.num_attention_heads,
        num_key_value_heads=recipe.num_key_value_heads, max_position_embeddings=recipe.max_position_embeddings,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, rms_norm_eps=1e-5,
    )
    model = LlamaForCausalLM(config)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.learning_rate, betas=(0.9, 0.95),
    )

    def lr_at(step: int) -> float:
        if step < recipe.warmup_steps:
            return recipe.learning_rate * (step + 1) / recipe.warmup_steps
        progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
        return recipe.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    gen = torch.Generator().manual_seed(recipe.seed)
    order = torch.randperm(len(train_blocks), generator=gen)
    rows: list[dict[str, float]] = []
    model.train()
    low = len(SPECIAL_TOKENS) + 256  # ordinary tokens only: no special token, no single byte
    for step in range(recipe.induction_steps):  # phase 1: induction warm-up (constant lr after a short warm-up)
        x = induction_batch(gen, recipe.induction_batch, recipe.induction_len, low, len(tokenizer))
        for group in optimizer.param_groups:
            group["lr"] = recipe.learning_rate * min(1.0, (step + 1) / recipe.warmup_steps)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % 250 == 0:
            log(f"induction warm-up {step + 1}/{recipe.induction_steps} loss {loss.item():.3f} "
                f"({time.time() - started:.0f} s)")
    for step in range(recipe.steps):
        idx = order[(torch.arange(recipe.batch_size) + step * recipe.batch_size) % len(order)]
        x = train_blocks[idx]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        loss = model(input_ids=x[:, :-1], labels=x[:, :-1]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        row = {"step": step + 1, "loss": round(loss.item(), 4), "lr": lr_at(step),
               "elapsed_s": round(time.time() - started, 1)}
        if (step + 1) % 100 == 0 or step + 1 == recipe.steps:
            row["heldout_loss"] = round(_heldout_loss(model, held_blocks, recipe.batch_size), 4)
            if (step + 1) % 250 == 0 or step + 1 == recipe.steps:
                row["copy_probe"] = copy_probe(model, tokenizer)
            log(f"step {step + 1}/{recipe.steps} loss {row['loss']:.3f} held-out {row['heldout_loss']:.3f} "
                f"copy probe {row.get('copy_probe', '-')} ({row['elapsed_s']:.0f} s)")
        rows.append(row)

    heldout = _heldout_loss(model, held_blocks, recipe.batch_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=128, do_sample=False,  # every special token the tokenizer has: else Trainer re-aligns and warns
    )
    model.save_pretrained(out_dir)
    tokenizer.model_max_length = recipe.max_position_embeddings
    tokenizer.save_pretrained(out_dir)
    with (out_dir / "training_log.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "loss", "lr", "elapsed_s", "heldout_loss", "copy_probe"])
        writer.writeheader()
        writer.writerows(rows)
    result = {
        "recipe": asdict(recipe),
        "params": sum(p.numel() for p in model.parameters()),
        "corpus": {"documents": len(docs), "heldout_documents": n_held, "train_tokens": int(train_blocks.numel()),
                   "heldout_tokens": int(held_blocks.numel()),
                   "sources": ["python stdlib docstrings (ast)",
                               "support threads: helpers.data.generate.pretraining_texts(seed=7)"]
                   + ([f"{recipe.copy_documents} copy documents: helpers.build.tiny.copy_document"]
                      if recipe.copy_documents else [])},
        "heldout_loss": round(heldout, 4),
        "copy_probe": copy_probe(model, tokenizer),
        "heldout_perplexity": round(math.exp(heldout), 2),
        "uniform_perplexity": len(tokenizer),
        "wall_time_s": round(time.time() - started, 1),
        "built_with": {"python": platform.python_version(), "torch": torch.__version__,
                       "transformers": __import__("transformers").__version__, "machine": platform.machine()},
    }
    (out_dir / "recipe.json").write_text(json.dumps(result, indent=2) + "\n")
    write_model_card(out_dir, result)
    write_checksums(out_dir)
    log(f"held-out perplexity {result['heldout_perplexity']} vs uniform {result['uniform_perplexity']}")
    return result


def write_model_card(folder: Path, result: dict[str, Any]) -> Path:
    """A README for ``data/tiny-llama``: what it is, how it was made, how well it models held-out text."""
    r, c = result["recipe"], result["corpus"]
    card = f"""# tiny-llama: the course's embedded offline model

A Llama-architecture causal LM ({result['params'] / 1e6:.2f} M parameters: {r['num_hidden_layers']} layers, hidden
{r['hidden_size']}, {r['num_attention_heads']} heads / {r['num_key_value_heads']} KV heads, tied embeddings) with its own
byte-level BPE tokenizer ({result['uniform_perplexity']} tokens) and a chat template whose assistant turns sit inside
`{{% generation %}}` markers. It exists so that every notebook runs offline on a CPU through the same QLoRA code path
as the GPU profiles. It continues text; it does not follow instructions until the course fine-tunes it.

- Built by `python -m helpers.build.tiny` (seed {r['seed']}) in {result['wall_time_s'] / 60:.0f} min on
  {result['built_with']['machine']} with Python {result['built_with']['python']}, torch {result['built_with']['torch']}.
- Pretraining text: {c['documents']} documents ({', '.join(c['sources'])}), {c['train_tokens'] / 1e6:.2f} M training
  tokens, {r['steps']} steps of {r['batch_size']} x {r['seq_len']} tokens, AdamW, cosine schedule, peak lr
  {r['learning_rate']}{f", after {r['induction_steps']} induction warm-up steps" if r['induction_steps'] else ""}.
- Why support threads: each is a ticket (generated with another seed than the course dataset) followed by an agent's
  prose reply that names the product, the order, the team and the priority, and sometimes quotes the ticket. They
  teach the model to *read* a ticket, the ability a real base model brings to fine-tuning; a model pretrained on
  bare tickets continued text well but ignored what a ticket said. No JSON and no system prompt appear in the
  corpus: the format is fine-tuning's job.
- **What it cannot do: copy an order id.** An order id is an arbitrary string; copying one is an in-context
  (*induction*) skill. The copy probe (60 fresh support threads: does the model continue "I found order ORD-" with
  the ticket's six digits?) reads **{result['copy_probe']:.0%}** for this model, and after the course's fine-tuning it
  writes a made-up `ORD-` number for tickets that name an order (notebooks 03 and 04 measure it against the
  majority answer). Levers measured for this (issue 11), none of which moved the probe off 0 within 400-2,000 steps
  on 2 CPU cores: every digit its own token; numbers in groups of up to 3 digits (`digit_groups`, so `order no.
  738000` and `ORD-738000` hold the same tokens); up to 30,000 copy documents (`copy_document`: records restated,
  order numbers normalised, lists said twice); 8 heads instead of 4; a copy-documents-only warm-up; and a 2,000-step
  warm-up on random token spans said twice (`induction_steps`), whose loss stayed at chance (8.25 nats) throughout.
  The levers stay in the recipe as options, off by default; this model uses the recipe that reads the other fields.
- Held-out perplexity: **{result['heldout_perplexity']}** on {c['heldout_tokens']} tokens of held-out documents, against
  {result['uniform_perplexity']} for a uniform guess over the vocabulary.
- Files: `recipe.json` (every setting and the numbers above), `training_log.csv` (loss per step, held-out loss every
  100 steps, copy probe every 250), `SHA256SUMS` (checked by `tests/test_models.py`).

The standard library's docstrings change a little between Python versions, so a rebuild on another version gives a
slightly different model; the course ships this one and CI never retrains it.
"""
    path = folder / "README.md"
    path.write_text(card)
    return path


def write_checksums(folder: Path) -> Path:
    """Write SHA256SUMS for every file in ``folder`` (the course checks them in a test)."""
    lines = [f"{sha256(p)}  {p.name}" for p in sorted(folder.iterdir()) if p.is_file() and p.name != "SHA256SUMS"]
    target = folder / "SHA256SUMS"
    target.write_text("\n".join(lines) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.build.tiny [--out DIR] [--steps N]``: pretrain the tiny model and write its files."""
    parser = argparse.ArgumentParser(prog="python -m helpers.build.tiny", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=path_arg, default=TINY_MODEL_DIR)
    parser.add_argument("--steps", type=pretraining_steps, default=None, help="pretraining steps (default: the "
                                                                              "recipe's)")
    args = parser.parse_args(argv)
    problem = unwritable_folder(args.out)  # found now, not after the pretraining
    if problem:
        parser.error(f"--out {problem}")
    recipe = TinyRecipe() if args.steps is None else TinyRecipe(steps=args.steps)
    build_tiny(args.out, recipe, log=lambda m: print(m, flush=True))
    return 0


def pretraining_steps(text: str) -> int:
    """An argparse type for ``build-tiny --steps``: 1 to 20 times the recipe's steps (about 35 minutes each)."""
    most = 20 * TinyRecipe().steps
    try:
        steps = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= steps <= most:
        raise argparse.ArgumentTypeError(f"{steps} is outside 1 to {most} (the recipe's {TinyRecipe().steps} steps take "
                                         f"about 35 minutes on 2 cores)")
    return steps


if __name__ == "__main__":
    from helpers.cli import run

    sys.exit(run(main))
