"""Generate the course dataset: support tickets -> structured JSON, with provenance. Taught in 02_dataset.

Every ticket is composed from independent parts (greeting, one or two issues, product and order mentions, urgency
cue, extra context, sign-off) with typos, case and punctuation noise, so held-out tickets are new combinations rather
than copies of a training template. The answer is derived from the same facts, so it is always correct.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.data.formats import write_jsonl  # noqa: F401  (re-exported: generate.write_jsonl)

GENERATOR = "helpers.data.generate/v2"
DEFAULT_SEED = 20261121

CATEGORIES = ("billing", "shipping", "returns", "technical", "account", "product_info")
PRIORITIES = ("low", "medium", "high", "urgent")
# The summary comes first: the fields after it can read the product, the order and the kind of issue from it.
FIELDS = ("summary", "category", "product", "order_id", "priority")

SYSTEM_PROMPT = (
    "You turn customer support tickets into JSON with the keys summary, category, product, order_id, priority. "
    "category is one of billing, shipping, returns, technical, account, product_info. "
    "priority is one of low, medium, high, urgent. Use null when the ticket does not say."
)

TICKET_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Support ticket extraction",
    "type": "object",
    "additionalProperties": False,
    "required": list(FIELDS),
    "properties": {
        "category": {"enum": list(CATEGORIES)},
        "product": {"type": ["string", "null"]},
        "order_id": {"type": ["string", "null"], "pattern": "^ORD-[0-9]{6}$"},
        "priority": {"enum": list(PRIORITIES)},
        "summary": {"type": "string", "minLength": 3, "maxLength": 120},
    },
}

# Canonical product name -> how customers write it.
PRODUCTS: dict[str, tuple[str, ...]] = {
    "AeroBook 14": ("AeroBook 14", "Aerobook 14", "AeroBook laptop", "aerobook"),
    "AeroBook Pro 16": ("AeroBook Pro 16", "AeroBook Pro", "aerobook pro 16"),
    "PulseBuds": ("PulseBuds", "Pulse Buds", "pulsebuds earbuds", "PulseBuds earbuds"),
    "PulseBuds Max": ("PulseBuds Max", "Pulsebuds Max headphones", "PulseBuds Max"),
    "HomeHub Mini": ("HomeHub Mini", "Homehub mini speaker", "HomeHub Mini"),
    "HomeHub Max": ("HomeHub Max", "HomeHub Max speaker", "homehub max"),
    "Vista 27 Monitor": ("Vista 27 Monitor", "Vista 27", "vista 27 monitor", "Vista27"),
    "TrackFit Band": ("TrackFit Band", "TrackFit", "trackfit band", "Trackfit fitness band"),
    "SnapCam 4K": ("SnapCam 4K", "SnapCam", "snapcam 4k camera", "Snapcam 4K"),
    "GlideMouse": ("GlideMouse", "Glide Mouse", "glidemouse"),
    "KeyFlow Keyboard": ("KeyFlow Keyboard", "KeyFlow", "keyflow keyboard"),
    "PowerCell 20K": ("PowerCell 20K", "PowerCell power bank", "powercell 20k"),
    "Nimbus Cloud Plan": ("Nimbus Cloud Plan", "Nimbus Cloud subscription", "cloud plan", "Nimbus Cloud"),
    "Nimbus Care+": ("Nimbus Care+", "Care+ warranty", "Nimbus Care plus", "Care+"),
}

# Issue templates per category: (family, ticket sentences, summary template). {p} = product, {o} = order mention.
ISSUES: dict[str, list[tuple[str, tuple[str, ...], str]]] = {
    "billing": [
        ("double_charge", (
            "I was charged twice for {o}.",
            "My card shows two payments for {o}, please refund one of them.",
            "You billed me two times for the same purchase ({o}).",
            "there are 2 identical charges on my statement for {o}",
            "Two payments went out for {o} but I only ordered once.",
            "Why did my bank take the money for {o} twice?",
            "{o}: charged 2x.",
        ), "Charged twice for {p_or_order}"),
        ("wrong_amount", (
            "The amount on my invoice for {o} is higher than the price at checkout.",
            "I paid more than the listed price for the {p}.",
            "Invoice for {o} shows the wrong total.",
            "Checkout said one price for the {p}, my invoice says another.",
            "The total you charged for {o} doesn't match my receipt.",
            "Was I overcharged for {o}? The numbers don't add up.",
        ), "Billed the wrong amount for {p_or_order}"),
        ("subscription_cancel_charge", (
            "I cancelled my {p} last month but you still charged me.",
            "Still getting billed for {p} after cancelling.",
            "why was I charged for {p} again? I cancelled it",
            "Even though my {p} is cancelled, a new payment went out this month.",
            "Cancelled the {p} weeks ago - why is there another charge?",
        ), "Charged after cancelling {p}"),
        ("invoice_request", (
            "Could you send me a VAT invoice for {o}?",
            "I need a proper invoice for {o} for my company.",
            "Please email me the receipt for the {p}.",
            "Can I get an invoice with my company name for {o}?",
            "Where can I download the receipt for {o}?",
            "My accountant needs an itemised invoice for the {p}.",
        ), "Requests an invoice for {p_or_order}"),
        ("payment_declined", (
            "My payment keeps getting declined when I try to buy the {p}.",
            "Checkout fails with 'payment declined' even though my card works elsewhere.",
            "card declined at checkout for {p}",
            "Every time I pay for the {p} the bank says the payment was refused.",
            "Tried three cards and the checkout still says declined.",
        ), "Payment declined at checkout for {p}"),
    ],
    "shipping": [
        ("late_delivery", (
            "My order {o} still hasn't arrived.",
            "{o} was supposed to arrive last week and it is still not here.",
            "Where is my package? {o} shows no update for 6 days.",
            "tracking for {o} has not moved since monday",
            "Any news on {o}? It's been almost two weeks.",
            "The courier says {o} was delivered but nothing came.",
            "Still no sign of {o}, the tracking page just says 'in transit'.",
        ), "Order {order_or_p} has not arrived"),
        ("wrong_address", (
            "I entered the wrong shipping address for {o}, can you change it?",
            "Please update the delivery address on {o} before it ships.",
            "Typo in the address on {o} - the house number is wrong.",
            "Can {o} go to my work address instead of home?",
        ), "Needs the shipping address changed for {order_or_p}"),
        ("damaged_in_transit", (
            "The box for {o} arrived crushed and the {p} inside is dented.",
            "My {p} arrived damaged, the packaging was torn open.",
            "{p} came broken out of the box, courier clearly dropped it",
            "The {p} was rattling inside the box when it came and the screen is cracked.",
            "Box was soaked and the {p} inside got damaged.",
            "Delivery of {o} came in a squashed box, the {p} is scratched.",
        ), "{p} arrived damaged in transit"),
        ("missing_item", (
            "{o} arrived but the {p} was missing from the box.",
            "I only received part of {o}; the {p} is not in the package.",
            "Opened {o} and there was no {p} inside.",
            "The packing slip lists the {p} but it wasn't in the parcel.",
        ), "{p} missing from delivered order"),
        ("shipping_cost", (
            "Why is shipping so expensive for the {p}?",
            "Do you offer free shipping on {p}?",
            "How much is delivery for the {p}?",
            "Shipping for the {p} costs almost as much as the item, is that right?",
        ), "Question about shipping cost for {p}"),
    ],
    "returns": [
        ("return_request", (
            "I would like to return the {p} from {o}.",
            "How do I send back the {p}? It doesn't suit me.",
            "I want to return {o}, it is not what I expected.",
            "can i return the {p} i bought, never used it",
            "Can I still send the {p} back? It's been 10 days.",
            "The {p} isn't for me, how do returns work?",
            "Please start a return for {o}.",
        ), "Wants to return {p_or_order}"),
        ("refund_status", (
            "I returned the {p} two weeks ago and still have no refund.",
            "Where is my refund for {o}? You received the return already.",
            "still waiting on my refund for {o}",
            "You got my return of the {p} ages ago, where's the money?",
            "It's been three weeks since you received {o} back and no refund yet.",
        ), "Refund not received for {p_or_order}"),
        ("exchange", (
            "Can I exchange the {p} for a different colour?",
            "I'd like to swap the {p} from {o} for the bigger model.",
            "Is a swap possible? The {p} I got is the wrong size.",
            "Could you replace the {p} with the newer model? I'll pay the difference.",
        ), "Wants to exchange {p}"),
        ("return_label", (
            "The return label for {o} doesn't work.",
            "I never got the return label for the {p}.",
            "The label for returning {o} won't print.",
            "No return label came with the email about the {p}.",
        ), "Problem with the return label for {p_or_order}"),
    ],
    "technical": [
        ("wont_turn_on", (
            "My {p} won't turn on anymore.",
            "The {p} is completely dead, no lights, nothing.",
            "{p} does not power on even after charging overnight",
            "Nothing happens when I press the power button on the {p}.",
            "Since yesterday the {p} just stays black.",
        ), "{p} will not turn on"),
        ("connectivity", (
            "The {p} keeps disconnecting from Bluetooth.",
            "My {p} can't connect to wifi after the update.",
            "{p} drops the connection every few minutes",
            "Wifi keeps dropping on the {p}.",
            "Bluetooth pairing with the {p} fails every time.",
        ), "{p} keeps losing its connection"),
        ("battery", (
            "The battery on my {p} drains in a couple of hours.",
            "{p} battery life is terrible since last week.",
            "A full charge of the {p} barely lasts the morning.",
            "Why does the {p} battery die so fast?",
        ), "{p} battery drains quickly"),
        ("firmware_update", (
            "The firmware update failed on my {p} and now it is stuck.",
            "{p} is stuck on the update screen.",
            "After the latest update the {p} is frozen on the logo.",
            "The {p} update stopped halfway and it won't start properly.",
        ), "{p} stuck after a failed firmware update"),
        ("overheating", (
            "My {p} gets really hot when I use it.",
            "The {p} overheats and shuts down.",
            "The {p} is too hot to touch after a few minutes.",
            "Is it normal for the {p} to get this hot? It switched itself off.",
        ), "{p} overheats"),
        ("app_crash", (
            "The Nimbus app crashes every time I open the {p} settings.",
            "The app won't sync with my {p}.",
            "Every time I pair the {p} the Nimbus app closes.",
            "Nimbus app freezes on the {p} screen.",
        ), "Nimbus app fails with {p}"),
    ],
    "account": [
        ("password_reset", (
            "I can't reset my password, the email never arrives.",
            "The password reset link says it has expired.",
            "locked out of my account, reset email not coming",
            "Reset link doesn't work, it says the token is invalid.",
            "I forgot my password and the reset page gives an error.",
        ), "Cannot reset account password"),
        ("locked_account", (
            "My account is locked after too many login attempts.",
            "It says my account is suspended and I don't know why.",
            "Why is my account blocked? I can't log in at all.",
            "Account suspended without any warning.",
        ), "Account is locked"),
        ("change_email", (
            "How do I change the email address on my account?",
            "I need to update the email on my Nimbus account.",
            "My email address changed, can you update it on my profile?",
            "Want to switch the login email to a new address.",
        ), "Wants to change the account email"),
        ("delete_account", (
            "Please delete my account and all my data.",
            "I want to close my Nimbus account.",
            "Close my account please, I don't use it anymore.",
            "Can you remove my profile and everything linked to it?",
        ), "Requests account deletion"),
        ("two_factor", (
            "I lost my phone and can't get the two-factor code.",
            "2FA codes are not accepted when I log in.",
            "The two-factor codes never arrive by text.",
            "My authenticator app was reset and now I can't log in.",
        ), "Two-factor login not working"),
    ],
    "product_info": [
        ("compatibility", (
            "Is the {p} compatible with a Mac?",
            "Does the {p} work with Android phones?",
            "will the {p} work with my old laptop",
            "Can I use the {p} with an iPhone?",
            "Would the {p} work with Windows 11?",
        ), "Asks if {p} is compatible with their devices"),
        ("specs", (
            "What is the battery life of the {p}?",
            "How much does the {p} weigh?",
            "Is the {p} waterproof?",
            "How big is the {p} exactly?",
            "Does the {p} come with a charger in the box?",
        ), "Asks about {p} specifications"),
        ("availability", (
            "When will the {p} be back in stock?",
            "Is the {p} available in black?",
            "Is the {p} sold out everywhere?",
            "Will there be a new colour of the {p}?",
        ), "Asks about {p} availability"),
        ("warranty_question", (
            "How long is the warranty on the {p}?",
            "Does Nimbus Care+ cover accidental damage on the {p}?",
            "What does the warranty on the {p} cover?",
            "Is the {p} still under warranty after 18 months?",
        ), "Asks about warranty for {p}"),
    ],
}

# Urgency cues decide the priority; tickets without a cue are "medium". A cue is a template whose {slots} are filled
# from CUE_PARTS (the parts of one level never appear in another's cues), so a level has dozens of distinct sentences:
# urgent = needed today or within hours, an emergency; high = soon, a deadline within days; low = no hurry at all.
PRIORITY_CUES: dict[str, tuple[str, ...]] = {
    "urgent": (
        "This is urgent, I need it fixed {u_today}.",
        "URGENT - I need this resolved {u_now}.",
        "Please treat this as an emergency, {u_stakes}.",
        "I need an answer {u_now}, this is critical.",
        "{u_deadline}, so I need this sorted {u_today}.",
        "Please help {u_now}: {u_stakes}.",
    ),
    "high": (
        "Please sort this out as soon as possible.",
        "I need this resolved {h_quickly}.",
        "This is really frustrating, please help {h_asap}.",
        "Can you prioritise this? It's important.",
        "I need this {h_before}, please {h_move}.",
        "Please {h_move}, I need it {h_before}.",
        "{h_annoyed}, could you look at it {h_asap}?",
    ),
    "low": (
        "No rush, whenever you get a chance.",
        "Not urgent at all, just curious.",
        "Take your time, it's not a big deal.",
        "Low priority, just wanted to let you know.",
        "{l_no_rush}, {l_whenever}.",
        "It's {l_not_urgent}, so {l_whenever}.",
        "{l_no_rush} - {l_reason}.",
    ),
}
CUE_PARTS: dict[str, tuple[str, ...]] = {
    "u_today": ("today", "by the end of today", "before tonight", "within the next hour", "by lunchtime"),
    "u_now": ("immediately", "right now", "right away", "without any delay"),
    "u_stakes": ("my business depends on it", "my whole team is blocked", "I can't work without it",
                 "customers are waiting on me", "my flight is tomorrow"),
    "u_deadline": ("My flight is tomorrow morning", "I leave for the airport in a few hours", "The event is tonight",
                   "My presentation is in two hours", "I start a new job tomorrow"),
    "h_quickly": ("quickly", "in the next day or two", "this week", "fast"),
    "h_asap": ("asap", "as soon as possible", "as soon as you can", "soon"),
    "h_before": ("before Friday", "by the weekend", "before the end of the week", "within a couple of days",
                 "before my trip on Saturday"),
    "h_move": ("move it up your list", "treat it as a priority", "give it some priority", "look at it soon"),
    "h_annoyed": ("This is really frustrating", "I'm quite annoyed by now", "This has gone on too long",
                  "It's getting annoying"),
    "l_no_rush": ("No rush", "No hurry", "There's no hurry", "Nothing urgent"),
    "l_whenever": ("whenever you get a chance", "whenever suits you", "any time next week is fine",
                   "answer when you can", "next week is fine too"),
    "l_not_urgent": ("not urgent", "not important", "not a big deal", "low priority"),
    "l_reason": ("I can manage without it for now", "I have a spare for now", "just curious",
                 "it's only a minor thing"),
}
_SLOT = re.compile(r"\{([a-z_]+)\}")


def cue_sentences(priority: str) -> list[str]:
    """Every urgency cue sentence the generator can write for ``priority`` (none for "medium"), in a fixed order."""
    out = []
    for template in PRIORITY_CUES.get(priority, ()):
        slots = _SLOT.findall(template)
        for parts in itertools.product(*(CUE_PARTS[slot] for slot in slots)):
            out.append(_SLOT.sub(lambda m, it=iter(parts): next(it), template))
    return list(dict.fromkeys(out))  # a template without slots can equal another's rendering


def template_pattern(template: str) -> re.Pattern[str]:
    """A sentence template as a regex that finds its renderings: any text in its slots, case and final stop free."""
    parts = _SLOT.split(template.rstrip(".?!"))[::2]
    return re.compile(r".{1,40}?".join(re.escape(p) for p in parts), re.IGNORECASE)


def _priority_cue(rng: random.Random, priority: str) -> str:
    """One cue sentence: a template of the level, each slot filled with a random part."""
    template = rng.choice(PRIORITY_CUES[priority])
    return _SLOT.sub(lambda m: rng.choice(CUE_PARTS[m.group(1)]), template)


GREETINGS = ("Hi,", "Hello,", "Hey there,", "Dear Nimbus support,", "Good morning,", "Hi team,", "", "",
             "Hello support,", "Hiya,", "Dear team,", "To whom it may concern,", "Hello Nimbus,", "Good afternoon,", "", "Hi all,")
OPENERS = ("", "", "I hope you can help.", "I have a problem.", "Writing about an issue.", "Quick question.",
           "I've been a customer for years.", "First time contacting you.", "", "Sorry to bother you.",
           "Long story short:", "Hope you're well.", "Need some help here.", "I'm writing because of a problem.")
CONTEXT = ("", "", "", "I already tried restarting it.", "I checked the FAQ but found nothing.",
           "My friend had the same problem.", "I bought it as a gift.", "I use it every day for work.",
           "I contacted you last week but got no reply.", "I'm travelling next week.", "",
           "I've had it for about a month.", "Everything else works fine.", "I updated everything last night.",
           "The same thing happened a year ago.", "I followed the steps in the manual.")
CLOSINGS = ("Thanks", "Thank you", "Regards", "Cheers", "Best", "Thanks in advance", "", "", "Many thanks",
            "Kind regards", "Thanks so much", "All the best", "")
NAMES = ("Maria", "John", "Aisha", "Chen", "Lukas", "Priya", "Tom", "Sofia", "Omar", "Emma", "Kenji", "Fatima",
         "Lucas", "Olga", "Ravi", "Nina", "Diego", "Hannah", "Yusuf", "Grace")
SURNAMES = ("Garcia", "Smith", "Khan", "Wei", "Muller", "Patel", "Brown", "Rossi", "Haddad", "Jones", "Tanaka",
            "Nowak", "Silva", "Ivanova", "Kumar", "Berg")
STREETS = ("Main Street", "Oak Avenue", "Station Road", "Elm Street", "High Street", "Park Lane", "Maple Drive")
ORDER_FORMATS = ("order {id}", "order #{n}", "order number {id}", "order {n}", "my order ({id})", "ORD {n}",
                 "order no. {n}", "ord#{n}", "order ref {n}", "#{n}", "(ORD-{n})", "{id}", "order ref. {id}")


@dataclass
class Ticket:
    """One generated ticket: its text, the correct JSON answer and where it came from."""

    text: str
    answer: dict[str, Any]
    family: str
    group: str
    variant: int = 0
    pii: list[str] = field(default_factory=list)


def _typo(rng: random.Random, text: str, rate: float) -> str:
    """Swap, drop or double letters in a few words (never inside an order id or a product name)."""
    words = text.split(" ")
    for i, word in enumerate(words):
        if len(word) > 3 and word.isalpha() and word.islower() and rng.random() < rate:
            j = rng.randrange(len(word) - 1)
            kind = rng.random()
            if kind < 0.4:
                word = word[:j] + word[j + 1] + word[j] + word[j + 2:]
            elif kind < 0.7:
                word = word[:j] + word[j + 1:]
            else:
                word = word[:j] + word[j] + word[j:]
            words[i] = word
    return " ".join(words)


def _order(rng: random.Random) -> tuple[str, str]:
    """An order id (``ORD-123456``) and how this customer writes it."""
    n = f"{rng.randrange(100000, 1000000)}"
    oid = f"ORD-{n}"
    return oid, rng.choice(ORDER_FORMATS).format(id=oid, n=n)


def _pii(rng: random.Random, name: str, surname: str) -> tuple[str, list[str]]:
    """Contact details some customers paste into tickets (for the PII-scrubbing lesson)."""
    parts, kinds = [], []
    if rng.random() < 0.12:
        parts.append(f"You can reach me at {name.lower()}.{surname.lower()}{rng.randrange(10, 99)}@example.com.")
        kinds.append("email")
    if rng.random() < 0.08:
        parts.append(f"My phone is +1 555 {rng.randrange(100, 999)} {rng.randrange(1000, 9999)}.")
        kinds.append("phone")
    if rng.random() < 0.05:
        parts.append(f"Ship to {rng.randrange(1, 300)} {rng.choice(STREETS)}, Springfield.")
        kinds.append("address")
    if rng.random() < 0.03:
        card = " ".join(f"{rng.randrange(1000, 10000)}" for _ in range(4))
        parts.append(f"The card I used was {card}.")
        kinds.append("card")
    return " ".join(parts), kinds


def _issue_text(
    rng: random.Random, category: str, product: str | None, order: str | None
) -> tuple[str, str, str, bool, bool]:
    """(family, sentence, summary template, names the product?, names the order?) for one issue."""
    # Without a product, only families that have a sentence naming no product can be used.
    families = [t for t in ISSUES[category] if product or any("{p}" not in s for s in t[1])]
    family, sentences, summary_t = rng.choice(families)
    usable = [s for s in sentences if ("{o}" not in s or order) and ("{p}" not in s or product)]
    if not usable:  # the family needs a mention we do not have: any sentence that names no product
        usable = [s for s in sentences if "{p}" not in s or product]
    sentence = rng.choice(usable)
    used_p, used_o = "{p}" in sentence, "{o}" in sentence
    alias = rng.choice(PRODUCTS[product]) if product else ""
    sentence = sentence.replace("{p}", alias).replace("{o}", order or "my order")
    return family, sentence, summary_t, used_p, used_o and order is not None


def _summary(template: str, product: str | None, order_id: str | None) -> str:
    p_or_order = product or order_id or "an order"
    order_or_p = order_id or product or "order"
    text = template.replace("{p_or_order}", p_or_order).replace("{order_or_p}", order_or_p)
    return text.replace("{p}", product or "product")


def make_ticket(rng: random.Random, index: int) -> Ticket:
    """Compose one ticket and its answer from independent random parts."""
    category = rng.choice(CATEGORIES)
    uses_product = category in ("technical", "product_info") or (category != "account" and rng.random() < 0.8)
    product = rng.choice(sorted(PRODUCTS)) if uses_product else None
    has_order = category in ("billing", "shipping", "returns") and rng.random() < 0.75
    order_id, order_text = _order(rng) if has_order else (None, None)

    family, first, summary_t, used_p, used_o = _issue_text(rng, category, product, order_text)
    sentences = [first]
    multi = rng.random() < 0.12
    if multi:  # a second, unrelated issue: the category stays the first one's, the summary mentions both
        other = rng.choice([c for c in CATEGORIES if c != category and (product or c not in ("technical", "product_info"))])
        _, second, _, used_p2, used_o2 = _issue_text(rng, other, product, order_text)
        used_p, used_o = used_p or used_p2, used_o or used_o2
        sentences.append(rng.choice(("Also,", "And another thing:", "Separately,", "On top of that,")) + " " +
                         second[0].lower() + second[1:])
    priority = rng.choices(PRIORITIES, weights=(0.2, 0.4, 0.25, 0.15))[0]
    if priority != "medium":
        sentences.append(_priority_cue(rng, priority))
    name, surname = rng.choice(NAMES), rng.choice(SURNAMES)
    context = rng.choice(CONTEXT)
    pii_text, pii_kinds = _pii(rng, name, surname)
    body = [rng.choice(GREETINGS), rng.choice(OPENERS), *sentences, context, pii_text]
    closing = rng.choice(CLOSINGS)
    if closing:
        body.append(f"{closing}, {name}" if rng.random() < 0.6 else closing)
    text = " ".join(part for part in body if part)
    style = rng.random()
    if style < 0.15:
        text = text.lower()
    elif style < 0.22:
        text = text.replace(".", "").replace(",", "")
    text = _typo(rng, text, rate=rng.choice((0.0, 0.0, 0.03, 0.08)))
    # The answer holds only what the text says: an unmentioned product or order is null.
    product = product if used_p else None
    order_id = order_id if used_o else None
    summary = _summary(summary_t, product, order_id)
    if multi:
        summary += " and a second issue"
    answer = {"summary": summary, "category": category, "product": product, "order_id": order_id,
              "priority": priority}
    return Ticket(text=text, answer=answer, family=f"{category}/{family}", group=f"t{index:05d}", pii=pii_kinds)


def to_row(ticket: Ticket, seed: int) -> dict[str, Any]:
    """One chat-format row with the system prompt, the ticket, the JSON answer and its provenance."""
    return {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": ticket.text},
            {"role": "assistant", "content": json.dumps(ticket.answer, ensure_ascii=False)},
        ],
        "metadata": {
            "generator": GENERATOR, "family": ticket.family, "seed": seed, "group": ticket.group,
            "variant": ticket.variant, "pii": ticket.pii, "synthetic": False,
        },
    }


def generate_tickets(n: int = 1800, seed: int = DEFAULT_SEED, resubmit_rate: float = 0.04) -> list[dict[str, Any]]:
    """``n`` chat rows; a few customers resubmit a ticket verbatim or lightly edited (planted duplicates)."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    index = 0
    while len(rows) < n:
        ticket = make_ticket(rng, index)
        rows.append(to_row(ticket, seed))
        if rng.random() < resubmit_rate and len(rows) < n:
            again = Ticket(**{**ticket.__dict__, "variant": 1})
            if rng.random() < 0.5:  # a light edit: a near-duplicate rather than an exact one
                again.text = again.text + rng.choice((" Please reply.", " Any update?", " Thanks again."))
            rows.append(to_row(again, seed))
        index += 1
    return rows


TEAMS = {"billing": "our billing team", "shipping": "our shipping team", "returns": "our returns team",
         "technical": "our technical support team", "account": "our account team",
         "product_info": "our product specialists"}


def agent_reply(rng: random.Random, answer: dict[str, Any]) -> str:
    """A support agent's prose reply that restates a ticket's facts (never JSON): the tiny model's reading lessons."""
    product, order_id, priority = answer["product"], answer["order_id"], answer["priority"]
    about = f" about your {product}" if product and rng.random() < 0.8 else ""
    thanks = rng.choice(("Thanks for contacting us", "Thank you for reaching out", "Thanks for writing in"))
    parts = [thanks + about + "."]
    if order_id:
        parts.append(rng.choice(("I found order {o}.", "Your order {o} is on file.", "I have looked up {o}."))
                     .format(o=order_id))
    if rng.random() < 0.6:
        parts.append(f"So that I have it right: {answer['summary'][0].lower()}{answer['summary'][1:]}.")
    if rng.random() < 0.9:
        parts.append(rng.choice(("I have passed this to {t}.", "This is one for {t}.", "{T} will take it from here."))
                     .format(t=TEAMS[answer["category"]], T=TEAMS[answer["category"]].capitalize()))
    if rng.random() < 0.85:
        parts.append(rng.choice(("I have marked it as {p} priority.", "Priority: {p}.", "We will handle it with {p} "
                                 "priority.")).format(p=priority))
    head = rng.choice(("Agent reply:", "Reply from Nimbus support:", "Nimbus support wrote:", "Answer:"))
    return head + "\n" + " ".join(parts) + rng.choice(("", "", " Best regards, Nimbus support", " Kind regards"))


def pretraining_texts(n: int = 4000, seed: int = 7, quote_rate: float = 0.3) -> list[str]:
    """Support threads (a ticket, a blank line, an agent's prose reply, sometimes quoting the ticket) from another
    seed than the dataset, for the tiny model's domain pretraining: they teach it to read and copy from a ticket, as a
    real base model can, and never show JSON or the system prompt."""
    rng = random.Random(seed)
    threads = []
    for i in range(n):
        ticket = make_ticket(rng, i)
        thread = f"{ticket.text}\n\n{agent_reply(rng, ticket.answer)}"
        if rng.random() < quote_rate:  # mail clients quote the message they answer: copying practice
            thread += "\n\n" + rng.choice(("You wrote:", "Original message:", "> Quoted:")) + "\n> " + ticket.text
        threads.append(thread)
    return threads


def write_schema(path: Path) -> Path:
    """Write the JSON Schema of the answer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(TICKET_SCHEMA, indent=2) + "\n", encoding="utf-8")
    return path
