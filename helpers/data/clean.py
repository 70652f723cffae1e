"""Clean a chat dataset: whitespace, PII, length filters, exact and near duplicates, with every removal explained.

Taught in 02_dataset. The accounting invariant ``valid_in == kept + rejected`` is asserted in :func:`clean_rows`; rows
that are not valid chat rows (see :mod:`helpers.data.validation`) are written to the rejects file too, with reason
``invalid:<code>``, and counted separately (``rows_in == valid_in + invalid_in``).
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from helpers.config import unwritable
from helpers.data.formats import DataFormatError, jsonl_writer, write_files
from helpers.data.validation import check_row, display_path, surrogate_where, validate

# Street types of US/UK addresses (full and USPS-style short forms) and words that start a street name elsewhere.
STREET_TYPES = ("street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|way|court|ct|place|pl|parkway|pkwy"
                "|terrace|ter|circle|cir|highway|hwy|square|sq|trail|trl|crescent|cres|close|row|plaza|alley|loop"
                "|pike|grove|gardens|mews|walk")
_CITY = r"(?-i:[A-Z][a-z][\w'-]*(?: [A-Z][a-z][\w'-]*){0,2})"  # one to three capitalised words (not NY, NW1)
_US_TAIL = rf"(?:, {_CITY}|(?-i: [A-Z][a-z]+\b))?(?:,? (?-i:[A-Z]{{2}}) \d{{5}}(?:-\d{{4}})?|,? (?-i:[A-Z]{{1,2}}\d[A-Z\d]? \d[A-Z]{{2}}))?"
ADDRESS_PATTERN = re.compile(
    # 350 Fifth Avenue, New York, NY 10118 / 221B Baker Street, London NW1 6XE / 7 park lane (not "5 pm drive")
    rf"(?<![\w-])\d{{1,5}}[A-Za-z]?(?! (?:am|pm|a\.m\.|p\.m\.|way|times?|hours?|days?|miles?|minutes?)\b)"
    rf" (?:(?:[NSEW]\.? )?[\w'.-]+ ){{0,3}}?(?:{STREET_TYPES})\b\.?{_US_TAIL}"
    # Hauptstraße 5, 10115 Berlin / Calle Mayor 10, 28013 Madrid
    rf"|(?-i:[A-ZÄÖÜ][\wäöüß-]*(?:straße|strasse|str\.|weg|allee|platz|gasse|damm|ring))(?: \d{{1,4}}[a-z]?)"
    rf"(?:, \d{{5}} {_CITY})?"
    rf"|(?:Calle|Avenida|Plaza|Paseo|Via|Viale|Piazza|Rua|Carrer) (?:[\w'-]+ ){{1,3}}\d{{1,4}}(?:, \d{{5}} {_CITY})?"
    # 12 rue de Rivoli, 75001 Paris
    rf"|\d{{1,4}}(?: ?bis| ?ter)?,? (?:rue|avenue|boulevard|bd|place|chemin|allée|impasse|quai) (?:[\w'-]+ ){{0,3}}"
    rf"[\w'-]+(?:, \d{{5}} {_CITY})?",
    re.IGNORECASE)
EMAIL_PATTERN = re.compile(r"(?<![\w.%+-])[\w.%+-]+@(?:[^\W_](?:[\w-]*[^\W_])?\.)*[^\W_](?:[\w-]*[^\W_])?")
IBAN_PATTERN = re.compile(r"(?<![\w-])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![\w-])")
CARD_PATTERN = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
# Words that make a long number an id rather than a phone number ("order 2125551234").
NOT_A_PHONE = re.compile(r"(?:order|invoice|inv|ref|reference|tracking|account|acct|serial|sn|ticket|case|no\.?|"
                         r"number|#)\s*:?\s*$", re.IGNORECASE)
PHONE_REGIONS = ("GB", "DE", "FR", "ES", "IT", "NL", "IN", "AU")  # national formats tried after US ("020 7946 0958")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        n = int(c) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """The ISO 13616 mod-97 check of an IBAN (spaces ignored)."""
    compact = text.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    return 15 <= len(compact) <= 34 and int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def find_ibans(text: str) -> list[tuple[int, int]]:
    """IBANs that pass the mod-97 check (trailing groups dropped until one does)."""
    spans = []
    for match in IBAN_PATTERN.finditer(text):
        candidate = match.group()
        while candidate and not iban_ok(candidate):
            candidate = candidate[: max(candidate.rfind(" "), 0)] if " " in candidate[4:] else ""
        if candidate:
            spans.append((match.start(), match.start() + len(candidate)))
    return spans


def find_cards(text: str) -> list[tuple[int, int]]:
    """Card numbers: grouped like a card (4-4-4-4, Amex 4-6-5) or 13-19 digits that pass the Luhn check."""
    spans = []
    for match in CARD_PATTERN.finditer(text):
        groups = [len(g) for g in re.split(r"[ -]", match.group())]
        digits = re.sub(r"\D", "", match.group())
        if groups in ([4, 4, 4, 4], [4, 6, 5], [4, 6, 4]) or (len(groups) == 1 and luhn_ok(digits)) or (
                13 <= len(digits) <= 19 and luhn_ok(digits) and set(groups) <= {4, 5, 6}):
            spans.append(match.span())
    return spans


def find_emails(text: str) -> list[tuple[int, int]]:
    """Email addresses, Unicode ones included; the domain must hold a letter (``foo@1.2.3`` is not one)."""
    return [m.span() for m in EMAIL_PATTERN.finditer(text)
            if any(c.isalpha() for c in m.group().split("@", 1)[1])]


def find_phones(text: str) -> list[tuple[int, int]]:
    """Phone numbers found by ``phonenumbers`` (Google's libphonenumber): international ones, valid national ones,
    and US-length numbers written with separators; not when an id word comes before (``order 1234567890``)."""
    try:
        import phonenumbers
        from phonenumbers import Leniency, PhoneNumberMatcher
    except ModuleNotFoundError:
        raise ModuleNotFoundError("PII scrubbing needs phonenumbers: pip install 'phonenumbers==9.0.43' (the pin in "
                                  "pyproject.toml)") from None

    # "0044 20 ..." is "+44 20 ..." dialled from Europe: same length, so the offsets hold.
    work = re.sub(r"(?<![\d+])00(?=[1-9]\d)", " +", text)
    spans: list[tuple[int, int]] = []
    for region in ("US", *PHONE_REGIONS):
        if region != "US" and not re.search(r"(?<![\d+])0\d", work):
            break
        for match in PhoneNumberMatcher(work, region, leniency=Leniency.POSSIBLE):
            raw = match.raw_string
            digits = re.sub(r"\D", "", raw)
            international = raw.lstrip().startswith("+")
            if region != "US" and (international or not raw.startswith("0")):
                continue  # only national formats are new in the other regions' passes
            valid = phonenumbers.is_valid_number(match.number)
            formatted = bool(re.search(r"\d[ .()-]+\d", raw)) and len(digits) >= 10
            if not (international or valid or formatted) or NOT_A_PHONE.search(work[: match.start]):
                continue
            if match.start > 0 and (work[match.start - 1].isalnum() or work[match.start - 1] in "-_/"):
                continue  # part of a longer token (ORD-1234567)
            start = match.start + (len(raw) - len(raw.lstrip()))
            if text[start - 1:start + 1] == "00":
                start -= 1  # the "00" prefix that became " +"
            span = (start, match.end)
            if not any(s < span[1] and span[0] < e for s, e in spans):
                spans.append(span)
    return spans


def find_addresses(text: str) -> list[tuple[int, int]]:
    """Street addresses (US/UK house number + street type, with city, state and ZIP or postcode; German, Spanish,
    Italian and French street forms)."""
    return [m.span() for m in ADDRESS_PATTERN.finditer(text)]


# Applied in this order, each on the text with earlier finds masked (an IBAN holds card-like digit groups, a card
# number phone-like ones).
PII_PATTERNS: dict[str, Any] = {
    "iban": find_ibans,
    "card": find_cards,
    "email": find_emails,
    "phone": find_phones,
    "address": find_addresses,
}
PII_TOKENS = {kind: f"[{kind.upper()}]" for kind in PII_PATTERNS}
PII_SET = Path(__file__).resolve().parents[2] / "data" / "pii" / "labelled.jsonl"  # hand-labelled, see its README


@dataclass(frozen=True)
class CleanConfig:
    """Every knob of :func:`clean_rows` (the defaults built ``data/tickets``)."""

    min_chars: int = 20  # user text shorter than this is not a ticket
    max_chars: int = 2000  # user text longer than this is pasted logs, not a ticket
    near_threshold: float = 0.8  # Jaccard similarity of character shingles above which two rows are near-duplicates
    shingle_size: int = 5  # characters per shingle
    num_perm: int = 128  # MinHash permutations (more = a finer Jaccard estimate, slower)
    scrub_pii: bool = True


@dataclass
class CleanResult:
    """Kept rows, rejected rows (each with ``reject: {reason, detail}``) and the counts."""

    kept: list[dict[str, Any]]
    rejects: list[dict[str, Any]]
    stats: dict[str, Any] = field(default_factory=dict)


def normalise_whitespace(text: str) -> str:
    """NFC Unicode, no zero-width or non-breaking spaces, single spaces, no blank-line runs. Taught in 02_dataset."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[\u200b\u200c\u200d\u2060\ufeff]", "", text)
    text = re.sub(r"[ \t\u00a0\u2000-\u200a\u202f\u3000]+", " ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def find_pii(text: str) -> list[tuple[str, int, int]]:
    """``(kind, start, end)`` of each email, phone, card... in ``text``, in text order.

    Kinds are searched in ``PII_PATTERNS`` order; what one kind found is masked (same length, so offsets hold) before
    the next kind searches, as a card number must not be seen as a phone.
    """
    masked, spans = text, []
    for kind, pattern in PII_PATTERNS.items():
        found = pattern(masked) if callable(pattern) else [m.span() for m in pattern.finditer(masked)]
        for start, end in found:
            spans.append((kind, start, end))
            masked = masked[:start] + "\0" * (end - start) + masked[end:]
    return sorted(spans, key=lambda span: span[1])


def scrub_pii(text: str) -> tuple[str, Counter[str]]:
    """Replace emails, phones, card numbers and street addresses with ``[EMAIL]``...; counts per kind."""
    found: Counter[str] = Counter()
    for kind, start, end in reversed(find_pii(text)):
        text = text[:start] + PII_TOKENS[kind] + text[end:]
        found[kind] += 1
    return text, Counter({kind: found[kind] for kind in PII_PATTERNS if found[kind]})


def read_pii_set(path: str | Path = PII_SET) -> list[tuple[str, list[tuple[str, int, int]]]]:
    """The hand-labelled PII set: each text with its ``(kind, start, end)`` spans (from ``[kind, substring]`` pairs).

    A line that is not ``{"text": str, "pii": [[kind, substring], ...]}`` is a ``ValueError`` naming ``file:line``; a
    path that is not a regular file (a folder, ``/dev/zero``) is refused before it is read.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file: pass a JSONL file like data/pii/labelled.jsonl")
    if path.stat().st_size > PII_SET_MAX_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size / 2**20:.0f} MB is not a hand-labelled set (the course's is "
                         f"{PII_SET.stat().st_size // 1024} kB): check the path")
    cases = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: byte {err.start + 1} is not UTF-8: re-save the file as UTF-8") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not JSON ({err.msg}, column {err.colno})") from None
        pairs = row.get("pii") if isinstance(row, dict) else None
        text = row.get("text") if isinstance(row, dict) else None
        if not isinstance(text, str) or not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs):
            raise ValueError(f'{where}: expected {{"text": "...", "pii": [["email", "a@b.com"], ...]}} (text a '
                             f'string, pii a list of [kind, substring] pairs)')
        spans, at = [], 0
        for kind, part in pairs:
            if kind not in PII_PATTERNS:
                raise ValueError(f"{where}: unknown kind {kind!r}: use one of {', '.join(PII_PATTERNS)}")
            start = text.find(part, at)
            if start < 0 or not part:
                raise ValueError(f"{where}: {part!r} is not in the text (after offset {at})")
            spans.append((kind, start, start + len(part)))
            at = start + len(part)
        cases.append((text, spans))
    return cases


PII_SET_MAX_BYTES = 50 * 2**20  # a hand-labelled set is kilobytes; a bigger file is the wrong path


def pii_scores(cases: list[tuple[str, list[tuple[str, int, int]]]] | None = None,
               finder: Any = None) -> dict[str, dict[str, float]]:
    """Precision and recall of :func:`find_pii` per kind on a labelled set. Taught in 02_dataset.

    Recall counts a labelled span as found only when spans of its kind cover all of it (a partial scrub such as
    ``[ADDRESS] York, NY 10118`` still leaks, so it is a miss); precision counts a found span as right when it
    overlaps a labelled span of its kind (``5 pm drive`` as an address is a false positive).
    """
    cases = read_pii_set() if cases is None else cases
    finder = finder or find_pii
    counts: dict[str, Counter[str]] = {kind: Counter() for kind in PII_PATTERNS}
    for text, gold in cases:
        found = finder(text)
        for kind, start, end in gold:
            covered = set()
            for k, s, e in found:
                if k == kind:
                    covered.update(range(max(s, start), min(e, end)))
            counts.setdefault(kind, Counter())["gold"] += 1
            counts[kind]["found"] += len(covered) == end - start
        for kind, start, end in found:
            counts.setdefault(kind, Counter())["flagged"] += 1
            counts[kind]["right"] += any(k == kind and s < end and start < e for k, s, e in gold)
    return {kind: {"labelled": c["gold"], "flagged": c["flagged"],
                   "precision": round(c["right"] / c["flagged"], 3) if c["flagged"] else 1.0,
                   "recall": round(c["found"] / c["gold"], 3) if c["gold"] else 1.0}
            for kind, c in counts.items()}


def user_text(row: dict[str, Any]) -> str:
    """All user turns of a row, joined (what deduplication and leakage checks compare)."""
    return "\n".join(m.get("content") or "" for m in row["messages"] if m.get("role") == "user")


def category_of(row: dict[str, Any]) -> str:
    """The ``category`` of the last assistant answer (JSON), or ``"unknown"``."""
    answer = next((m.get("content") for m in reversed(row["messages"]) if m.get("role") == "assistant"), None)
    try:
        value = json.loads(answer).get("category") if answer else None
    except (ValueError, AttributeError):
        value = None
    return value if isinstance(value, str) else "unknown"


def balance_report(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Rows per category, largest first. Taught in 02_dataset."""
    return dict(Counter(category_of(r) for r in rows).most_common())


def shingles(text: str, k: int = 5) -> set[str]:
    """Character k-grams of the lower-cased, space-normalised text (short texts give one shingle)."""
    text = " ".join(text.lower().split())
    return {text[i:i + k] for i in range(max(1, len(text) - k + 1))}


def jaccard(a: set[str], b: set[str]) -> float:
    """Exact Jaccard similarity of two shingle sets."""
    return len(a & b) / len(a | b) if a or b else 1.0


class NearDuplicateIndex:
    """MinHash LSH over shingles; candidates are confirmed with the exact Jaccard so results are deterministic."""

    def __init__(self, threshold: float = 0.8, shingle_size: int = 5, num_perm: int = 128) -> None:
        from datasketch import MinHashLSH

        self.threshold, self.k, self.num_perm = threshold, shingle_size, num_perm
        # LSH only proposes candidates; it is tuned for recall (a lower threshold, false negatives weighted 9:1:
        # at the default 0.8 a pair at Jaccard 0.8 is missed with probability ~0.002) and the exact Jaccard decides.
        self.lsh = MinHashLSH(threshold=max(0.05, threshold - 0.1), num_perm=num_perm, weights=(0.1, 0.9))
        self.sets: dict[Any, set[str]] = {}

    def _minhash(self, grams: set[str]) -> Any:
        from datasketch import MinHash

        mh = MinHash(num_perm=self.num_perm, seed=1)
        mh.update_batch(sorted(g.encode("utf-8") for g in grams))
        return mh

    def add(self, key: Any, text: str) -> None:
        grams = shingles(text, self.k)
        self.sets[key] = grams
        self.lsh.insert(key, self._minhash(grams))

    def query(self, text: str) -> list[tuple[Any, float]]:
        """Indexed keys with Jaccard >= threshold, most similar first (ties by key order)."""
        grams = shingles(text, self.k)
        hits = [(key, jaccard(grams, self.sets[key])) for key in self.lsh.query(self._minhash(grams))]
        return sorted([h for h in hits if h[1] >= self.threshold], key=lambda h: (-h[1], str(h[0])))


def _reject(row: dict[str, Any], reason: str, detail: str) -> dict[str, Any]:
    return {**row, "reject": {"reason": reason, "detail": detail}}


def _answer(row: dict[str, Any]) -> str:
    return next((str(m.get("content")) for m in reversed(row["messages"]) if m.get("role") == "assistant"), "")


def _where(row: dict[str, Any], index: int) -> str:
    meta = row.get("metadata") or {}
    return f"row {index}" + (f" (group {meta['group']})" if "group" in meta else "")


def clean_rows(rows: list[dict[str, Any]], cfg: CleanConfig = CleanConfig()) -> CleanResult:
    """Normalise, scrub PII, filter by length, drop exact then near duplicates. Taught in 02_dataset."""
    kept: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    pii: Counter[str] = Counter()
    seen: dict[str, int] = {}
    normalised: dict[int, dict[str, Any]] = {}
    index = NearDuplicateIndex(cfg.near_threshold, cfg.shingle_size, cfg.num_perm)
    changed = 0
    for i, row in enumerate(rows):
        messages = []
        for m in row["messages"]:
            content = m.get("content")
            if isinstance(content, str):
                new = normalise_whitespace(content)
                if cfg.scrub_pii and m.get("role") != "system":
                    new, found = scrub_pii(new)
                    pii.update(found)
                changed += new != content
                m = {**m, "content": new}
            messages.append(m)
        row = {**row, "messages": messages}
        broken = [p for p in check_row(row, 0) if p.is_error]
        if broken:  # cleaning emptied a message (an answer of only zero-width spaces): it would fail validate
            rejects.append(_reject(row, f"invalid_after_cleaning:{broken[0].code}", broken[0].message))
            continue
        text = user_text(row)
        if len(text) < cfg.min_chars:
            rejects.append(_reject(row, "too_short", f"{len(text)} user characters < {cfg.min_chars}"))
            continue
        if len(text) > cfg.max_chars:
            rejects.append(_reject(row, "too_long", f"{len(text)} user characters > {cfg.max_chars}"))
            continue
        key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        if key in seen:
            where = _where(rows[seen[key]], seen[key])
            rejects.append(_reject(row, "exact_duplicate", f"same messages as kept {where}"))
            continue
        hits = index.query(text)
        if hits:
            j, sim = hits[0]
            conflict = "; its answer differs" if _answer(normalised[j]) != _answer(row) else ""
            detail = f"Jaccard {sim:.2f} with kept {_where(rows[j], j)}{conflict}"
            rejects.append(_reject(row, "near_duplicate", detail))
            continue
        seen[key] = i
        normalised[i] = row
        index.add(i, text)
        kept.append(row)
    assert len(rows) == len(kept) + len(rejects), "cleaning lost or invented rows"
    stats = {
        "valid_in": len(rows), "kept": len(kept), "rejected": len(rejects),
        "reasons": dict(sorted(Counter(r["reject"]["reason"] for r in rejects).items())),
        "pii": {kind: pii.get(kind, 0) for kind in PII_PATTERNS}, "texts_changed": changed,
        "balance": balance_report(kept), "config": asdict(cfg),
    }
    return CleanResult(kept, rejects, stats)


def clean_file(in_path: str | Path, out_path: str | Path, rejects_path: str | Path,
               cfg: CleanConfig = CleanConfig()) -> CleanResult:
    """Clean a JSONL file: kept rows to ``out_path``, every removed or invalid row to ``rejects_path`` with why.

    The input is never overwritten (an output path equal to the input, or both outputs at one path, is refused before
    anything is read), both outputs are checked for writability first and written atomically, and a rejected line
    keeps its text: ``raw`` (or ``raw_base64`` for bytes that are not UTF-8) beside the parsed ``data``.
    """
    check_outputs(in_path, {"--out": out_path, "--rejects": rejects_path})
    report = validate(in_path)
    if report.unreadable:
        raise DataFormatError(report.file_problems[0].format(in_path))
    if report.rows and all(not r.valid for r in report.rows) and Path(in_path).suffix.lower() in (".csv", ".tsv"):
        raise DataFormatError(f"{in_path}:1: not_jsonl: clean reads chat JSONL and this is a CSV file: convert it "
                              f"first with `python -m helpers.data convert {in_path} --out "
                              f"{Path(in_path).with_suffix('.jsonl')}`, then clean that file")
    invalid = []
    first_problem = report.rows[0].problems[0] if report.rows and report.rows[0].problems else None
    for r in report.rows:
        if not r.valid:
            first = next((p for p in r.problems if p.is_error), None) or first_problem
            invalid.append({**_raw_record(r), "reject": {"reason": f"invalid:{first.code}", "detail": first.message}})
    result = clean_rows(report.valid_rows(), cfg)
    result.stats = {"rows_in": report.n_rows, "invalid_in": len(invalid), **result.stats}
    assert result.stats["rows_in"] == result.stats["valid_in"] + result.stats["invalid_in"]
    write_files({Path(out_path): jsonl_writer(result.kept), Path(rejects_path): jsonl_writer(invalid + result.rejects)})
    return result


def _raw_record(row: Any) -> dict[str, Any]:
    """``line``, the raw text of an invalid row (``raw``, or ``raw_base64`` when not UTF-8) and its parsed ``data``."""
    import base64

    record: dict[str, Any] = {"line": row.line}
    if row.raw is not None:
        try:
            record["raw"] = row.raw.decode("utf-8")
        except UnicodeDecodeError:
            record["raw_base64"] = base64.b64encode(row.raw).decode("ascii")
    record["data"] = row.data if surrogate_where(row.data) is None else None
    return record


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when two paths name one file (symlinks, ``./`` and hard links included)."""
    try:
        if os.path.realpath(a) == os.path.realpath(b):
            return True
        return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def check_outputs(in_path: str | Path, outputs: dict[str, str | Path]) -> None:
    """Refuse, in one line, outputs that are the input, each other, a directory or below a file."""
    named = list(outputs.items())
    for i, (label, path) in enumerate(named):
        shown = display_path(path)
        if same_file(path, in_path):
            raise DataFormatError(f"error: {label} {shown} is the input file: write to another path (the input is "
                                  f"never overwritten)")
        for other, other_path in named[i + 1:]:
            if same_file(path, other_path):
                raise DataFormatError(f"error: {label} and {other} are the same file {shown}: give each its own path")
        reason = unwritable(path)
        if reason:
            raise DataFormatError(f"error: {label} {shown}: cannot write there ({reason}): choose a file path in a "
                                  f"folder you can write to")


def make_near_duplicates(rows: list[dict[str, Any]], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` lightly edited copies of random rows, under new group ids (``metadata.planted_from`` = source index).

    Taught in 02_dataset: the edits are the ones real resubmissions show (a word dropped, a line appended, two
    letters swapped), so the recall and precision of near-duplicate removal and of the leakage check can be measured.
    """
    import random

    rng = random.Random(seed)
    copies = []
    for k, src in enumerate(rng.sample(range(len(rows)), n)):
        row = rows[src]
        text = user_text(row)
        words = text.split(" ")
        if k % 3 == 0 and len(words) > 6:
            del words[rng.randrange(1, len(words) - 1)]
            text = " ".join(words)
        elif k % 3 == 1:
            text = text + rng.choice((" Any update?", " Please reply soon.", " Thanks again."))
        else:
            j = rng.randrange(len(text) - 1)
            text = text[:j] + text[j + 1] + text[j] + text[j + 2:]
        messages = [{**m, "content": text} if m.get("role") == "user" else m for m in row["messages"]]
        meta = {**(row.get("metadata") or {}), "group": f"planted{k:04d}", "planted_from": src}
        copies.append({"messages": messages, "metadata": meta})
    return copies


def detection_scores(flagged: set[int], planted: set[int]) -> dict[str, float]:
    """Recall and precision of flagged row indices against the planted ones."""
    hit = len(flagged & planted)
    return {"planted": len(planted), "flagged": len(flagged), "caught": hit,
            "recall": hit / len(planted) if planted else 1.0,
            "precision": hit / len(flagged) if flagged else 1.0}
