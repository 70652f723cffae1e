"""Screen rows for off-topic, unsafe and biased tickets, each flag with its reason. Taught in 02_dataset.

A fine-tune learns from every row it sees: a ticket that threatens an agent, asks for help with fraud or demeans a
group of people teaches the model to treat such text as an ordinary ticket (and its answer as the right reaction),
and rows that are not support tickets at all teach it to force any text into the ticket schema. :func:`screen_text`
gives each text at most one reason, the most serious first:

* ``unsafe``: a threat of violence, harassment of staff (insults aimed at a person), a request for harmful or
  illegal help (weapons, break-ins, fraud, stalking, another person's data), self-harm;
* ``biased``: a demeaning generalisation about a group of people (gender, age, nationality, ethnicity, religion,
  disability) or a demand to be served, or not, by such a group;
* ``off_topic``: nothing in it is about Nimbus's products, orders, accounts or service.

Anger about a product or the service ("this stupid laptop", "absolutely useless service") is *not* flagged: real
customers write like that and the model must handle them; dropping them would bias the data toward polite tickets.
The rules are word lists and patterns (no model), written together with the labelled set ``data/filter/labelled.jsonl``:
their scores on it are optimistic, so :func:`screen_rows` also reports how many ordinary tickets it flags.
Flagged rows are rejects with a reason, never silently dropped (``valid_in == kept + rejected``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from helpers.config import DATA_DIR
from helpers.data.clean import CleanResult, user_text
from helpers.data.generate import PRODUCTS

KINDS = ("unsafe", "biased", "off_topic")  # the order of seriousness: a text gets the first kind that matches
LABELS = ("clean", *KINDS)
SCREEN_SET = DATA_DIR / "filter" / "labelled.jsonl"

_PERSON = r"(?:you|your \w+|someone|somebody|them|him|her|the agent|your staff|people)"
UNSAFE_PATTERNS: dict[str, str] = {
    "threat": rf"\b(?:hurt|kill|beat|stab|shoot|attack|punch)\w* {_PERSON}\b|\bburn \w+ \w+ down\b|"
              rf"\bburn (?:it|your \w+) down\b|\bi know where (?:you|your \w+(?: \w+)?) lives?\b|\bor else\b|"
              rf"\bdeserve to be (?:beaten|hurt|killed|punished)\b",
    "harassment": r"\b(?:idiot|idiots|moron|morons|bitch|scum|worthless (?:idiot|people|person|piece)|piece of "
                  r"(?:garbage|shit|crap|trash))\b",
    "harmful request": r"\b(?:how (?:do|can|could) i|help me|tell me how|a way to|easiest way to|teach me)\b.{0,60}?\b"
                       r"(?:hack(?:ing)? into|explode|weapon|bypass (?:the )?payment|for free|without (?:them|him|her) "
                       r"knowing|secretly|fake (?:\S+ )?reviews?|steal)\b",
    "another person's data": r"\b(?:home address|phone number|address|e-?mail)\b.{0,30}\bof (?:the|another|a|that) "
                             r"(?:customer|person|user|buyer)\b",
    "self-harm": r"\b(?:kill(?:ing)? myself|hurt(?:ing)? myself|end (?:it all|my life)|suicid\w*|don't want to live)\b",
}
_GROUP = (r"(?:women|woman|men|man|males?|females?|girls?|boys?|old (?:people|folks|men|women)|elderly|young people|"
          r"foreigners?|immigrants?|migrants?|(?:indian|chinese|muslim|jewish|christian|black|white|asian|african|"
          r"mexican|arab|russian)s?|disabled(?: people| persons?)?|gays?|lesbians?)")
BIASED_PATTERNS: dict[str, str] = {
    "generalisation": rf"\b(?:all |the |typical,? (?:the )?)?{_GROUP}(?: \w+){{0,4}} (?:are|is|can't|cannot|shouldn't|"
                      rf"should not|never|always|obviously|just|slow)\b(?: \w+){{0,3}}?\s?(?:bad|stupid|slow|junk|lazy|"
                      rf"useless|stole|steal|understand|speak|fix|allowed|everything)",
    "served by a group": rf"\b(?:don't|do not|doesn't|does not|isn't|is not|not|no)\b(?: \w+){{0,5}} (?:a |an )?"
                         rf"{_GROUP}\b(?! (?:ordered|bought|account))|\b(?:put|send|give) me (?:a |an )?{_GROUP}\b|"
                         rf"\bput (?:a |an )?{_GROUP} on\b|\b(?:technician|agent|person|someone) is {_GROUP}\b|"
                         rf"\bdon't put one on\b",
}
# Words of a support ticket for this shop: products (as customers write them), orders, money, delivery, accounts,
# devices and service. A text with none of them is off-topic.
SUPPORT_WORDS = (
    r"orders?|ord[- ]?#?\d+|refunds?|charged?|charges|invoices?|receipts?|bill(?:ed|ing)?|payments?|paid|pay|prices?|"
    r"discounts?|deliver(?:y|ed)?|ship(?:ped|ping)?|parcels?|packages?|courier|tracking|returns?|returned|"
    r"warrant(?:y|ies)|"
    r"accounts?|passwords?|log ?in|login|2fa|subscriptions?|cancel(?:led)?|plans?|app|devices?|batter(?:y|ies)|"
    r"screens?|keyboards?|mouse|monitors?|speakers?|earbuds|headphones|cameras?|laptops?|chargers?|charging|firmware|"
    r"updates?|bluetooth|wi-?fi|pair(?:ing)?|support|replacement|broken|crash(?:es|ed)?|reply|callback|service|"
    r"technician|router|setup|store|products?|customer|nimbus"
)


def _compile(patterns: dict[str, str]) -> dict[str, re.Pattern[str]]:
    return {name: re.compile(p, re.IGNORECASE) for name, p in patterns.items()}


_UNSAFE, _BIASED = _compile(UNSAFE_PATTERNS), _compile(BIASED_PATTERNS)
_ALIASES = sorted({a for product, aliases in PRODUCTS.items() for a in (product, *aliases)}, key=len, reverse=True)
# lookarounds, not \b: an alias such as "Care+" ends in a non-word character
_SUPPORT = re.compile(rf"(?<!\w)(?:{SUPPORT_WORDS}|{'|'.join(re.escape(a) for a in _ALIASES)})(?!\w)", re.IGNORECASE)


def screen_text(text: str) -> tuple[str, str] | None:
    """``(kind, reason)`` for an unsafe, biased or off-topic text (the most serious kind), else None.

    Taught in 02_dataset. The reason names the rule and quotes what matched.
    """
    for kind, rules in (("unsafe", _UNSAFE), ("biased", _BIASED)):
        for rule, pattern in rules.items():
            match = pattern.search(text)
            if match:
                return kind, f"{rule}: {match.group(0)[:60]!r}"
    if not _SUPPORT.search(text):
        return "off_topic", "no product, order, account or service word"
    return None


def screen_rows(rows: list[dict[str, Any]]) -> Any:
    """Rows whose user turns pass :func:`screen_text` kept, the others rejected with their reason. Taught in 02_dataset.

    Returns a ``helpers.data.clean.CleanResult`` (kept, rejects with ``reject: {reason, detail}``, stats).
    """
    kept, rejects = [], []
    for row in rows:
        flag = screen_text(user_text(row))
        if flag:
            rejects.append({**row, "reject": {"reason": flag[0], "detail": flag[1]}})
        else:
            kept.append(row)
    assert len(rows) == len(kept) + len(rejects), "screening lost or invented rows"
    stats = {"valid_in": len(rows), "kept": len(kept), "rejected": len(rejects),
             "reasons": dict(sorted(Counter(r["reject"]["reason"] for r in rejects).items()))}
    return CleanResult(kept, rejects, stats)


def read_screen_set(path: str | Path = SCREEN_SET) -> list[tuple[str, str]]:
    """The hand-labelled screening set: ``(text, label)`` pairs, label one of :data:`LABELS`."""
    cases = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("label") not in LABELS or not isinstance(row.get("text"), str):
            raise ValueError(f"{path}:{number}: each line needs a text and a label in {', '.join(LABELS)}; got "
                             f"{row.get('label')!r}")
        cases.append((row["text"], row["label"]))
    return cases


def screen_scores(cases: list[tuple[str, str]] | None = None, screen: Any = None) -> list[dict[str, Any]]:
    """Precision and recall per kind on a labelled set, beside flag-nothing and flag-everything. Taught in 02_dataset.

    A text counts as flagged for a kind when the screen's first (most serious) kind is that kind. Flag nothing has
    no precision (it flags nothing: NaN) and recall 0; flag everything has recall 1 and precision = the kind's share.
    """
    cases = read_screen_set() if cases is None else cases
    screen = screen or screen_text
    found = [(screen(text) or ("clean", ""))[0] for text, _label in cases]
    rows = []
    for kind in KINDS:
        gold = sum(label == kind for _t, label in cases)
        flagged = sum(f == kind for f in found)
        right = sum(f == kind and label == kind for f, (_t, label) in zip(found, cases))
        rows.append({"kind": kind, "system": "screen", "labelled": gold, "flagged": flagged,
                     "precision": right / flagged if flagged else float("nan"),
                     "recall": right / gold if gold else 1.0})
        rows.append({"kind": kind, "system": "flag nothing", "labelled": gold, "flagged": 0,
                     "precision": float("nan"), "recall": 0.0})
        rows.append({"kind": kind, "system": "flag everything", "labelled": gold, "flagged": len(cases),
                     "precision": gold / len(cases) if cases else float("nan"), "recall": 1.0})
    return rows
