"""Build the Nimbus knowledge base (policies + product FAQ) and its labelled questions.

Every passage is rendered from a facts table (numbers drawn once with a fixed seed), so every labelled answer is
checkable: the gold answer string is asserted to occur in its gold passage. Questions are written the way customers
ask (other words than the passage: "send back" for "return", "how heavy" for "weight"), so retrieval is not a string
match. ``python -m helpers.data.kb build`` writes ``data/kb/``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

from helpers.cli import path_arg
from helpers.config import KB_DIR, unwritable_folder
from helpers.data.generate import PRODUCTS
from helpers.data.kb import Question, Section, load_questions, load_sections, slug

GENERATOR = "helpers.data.kb/v1"
KB_SEED = 20261122

# Which FAQ template each product gets. Nimbus Care+ is a policy (warranty.md), not a device.
PRODUCT_KIND: dict[str, str] = {
    "AeroBook 14": "laptop", "AeroBook Pro 16": "laptop", "PulseBuds": "earbuds", "PulseBuds Max": "headphones",
    "HomeHub Mini": "speaker", "HomeHub Max": "speaker", "Vista 27 Monitor": "monitor", "TrackFit Band": "band",
    "SnapCam 4K": "camera", "GlideMouse": "mouse", "KeyFlow Keyboard": "keyboard", "PowerCell 20K": "powerbank",
    "Nimbus Cloud Plan": "cloud",
}


# ------------------------------------------------------------------------------------------------ the facts table


def draw_facts(seed: int = KB_SEED) -> dict[str, Any]:
    """The numbers behind every passage, drawn once with ``seed`` (policies, then one dict per product)."""
    rng = random.Random(seed)
    pick = rng.choice
    policies = {
        "return_days": pick((30, 45)), "laptop_return_days": pick((14, 15)), "label_hours": pick((24, 48)),
        "restocking_fee_pct": pick((10, 15)), "exchange_days": pick((30, 60)),
        "refund_business_days": pick((5, 7)), "bank_days": pick(("3 to 10", "5 to 10")),
        "standard_days": pick(("3 to 5", "2 to 4")), "express_days": pick(("1 to 2",)),
        "free_shipping_over": pick((35, 50)), "standard_fee": pick(("$4.99", "$5.99")),
        "express_fee": pick(("$12.99", "$14.99")), "damage_report_hours": pick((48, 72)),
        "address_change_hours": pick((1, 2)),
        "warranty_years": 1, "laptop_warranty_years": 2, "care_years": 3, "care_claims": 2,
        "care_fee": pick(("$49", "$59")), "care_signup_days": pick((30, 60)),
        "double_charge_days": pick((5, 7)), "invoice_menu": "Account > Orders > Download invoice",
        "reset_link_minutes": pick((30, 60)), "lock_attempts": pick((5, 6)), "lock_minutes": pick((15, 30)),
        "backup_codes": pick((8, 10)), "recovery_hours": pick((48, 72)), "deletion_days": pick((14, 30)),
        "email_confirm_hours": pick((24, 48)),
    }
    ranges = {  # kind -> fact -> choices; () = drawn per product from `sized` below (same draw order)
        "laptop": {"battery": (12, 14, 16, 18, 20), "charge_min": (90, 100, 120), "weight_g": (),
                   "reset_s": (10, 15)},
        "earbuds": {"battery": (5, 6, 7, 8), "case_total": (24, 28, 30), "charge_min": (60, 75, 90),
                    "weight_g": (4, 5, 6), "ip": ("IPX4", "IPX5"), "reset_s": (10, 12, 15)},
        "headphones": {"battery": (30, 35, 40, 45), "charge_min": (120, 150), "weight_g": (250, 265, 280),
                       "reset_s": (8, 10, 12)},
        "speaker": {"weight_g": (), "reset_s": (15, 20, 25), "watts": ()},
        "monitor": {"weight_g": (4800, 5200, 5600), "refresh": (144, 165), "usb_c_w": (65, 90), "reset_s": (5, 8)},
        "band": {"battery_days": (7, 10, 12, 14), "charge_min": (60, 90, 120), "weight_g": (21, 24, 26),
                 "reset_s": (8, 10, 12)},
        "camera": {"battery_min": (90, 110, 130), "charge_min": (100, 120, 150), "weight_g": (118, 126, 134),
                   "sd_gb": (256, 512), "reset_s": (8, 10)},
        "mouse": {"battery_days": (60, 70, 90), "charge_min": (60, 75, 90), "weight_g": (78, 85, 93),
                  "devices": (2, 3), "reset_s": (5, 6, 8)},
        "keyboard": {"battery_days": (90, 120, 180), "charge_min": (120, 150, 180), "weight_g": (420, 460, 540),
                     "devices": (3, 4), "reset_s": (5, 8, 10)},
        "powerbank": {"mah": (20000,), "phone_charges": (4, 5), "charge_min": (180, 210, 240),
                      "weight_g": (360, 390, 420), "watts": (45, 65, 100)},
        "cloud": {"storage_tb": (1, 2), "price": ("$2.99", "$3.99", "$4.99"), "devices": (5, 6, 8),
                  "trash_days": (30, 45, 60)},
    }
    sized = {  # the bigger model of a pair is heavier and louder
        "AeroBook 14": {"weight_g": (1190, 1290, 1350)}, "AeroBook Pro 16": {"weight_g": (1820, 1950, 2050)},
        "HomeHub Mini": {"weight_g": (310, 380), "watts": (10, 20)},
        "HomeHub Max": {"weight_g": (1450, 2200), "watts": (40, 60)},
    }
    products: dict[str, dict[str, Any]] = {}
    for name in sorted(PRODUCT_KIND):
        kind = PRODUCT_KIND[name]
        choices = {**ranges[kind], **sized.get(name, {})}
        products[name] = {"kind": kind, **{k: pick(v) for k, v in choices.items()}}
    return {"seed": seed, "policies": policies, "products": products}


# ------------------------------------------------------------------------------------------------ passages


def policy_docs(f: dict[str, Any]) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """doc_id -> (title, [(heading, body)]) for the six policy documents."""
    return {
        "policies/returns": ("Returns and exchanges", [
            ("Return window", f"You can return most items within {f['return_days']} days of delivery for any reason. "
             f"Laptops (AeroBook 14 and AeroBook Pro 16) have a shorter window of {f['laptop_return_days']} days. "
             "The window starts on the delivery date shown in your tracking."),
            ("Condition of returned items", "Items must come back with all accessories and the original box. "
             f"Opened laptops and monitors carry a {f['restocking_fee_pct']}% restocking fee unless they are faulty. "
             "Earbuds and headphones must be returned with the ear tips sealed in their bag for hygiene reasons."),
            ("Return labels", "Start a return from Account > Orders and choose a reason. A prepaid return label is "
             f"emailed to you within {f['label_hours']} hours. Print it, tape it to the box and drop the parcel at "
             "any partner courier point. If the label does not arrive, check your spam folder before contacting us."),
            ("Exchanges", f"You can swap an item for another colour or size within {f['exchange_days']} days of "
             "delivery. We ship the replacement as soon as the courier scans your original item, at no extra cost."),
            ("Items that cannot be returned", "Gift cards, downloaded software and Nimbus Cloud Plan months "
             "already used cannot be returned. Nimbus Care+ can be cancelled for a pro-rata refund."),
        ]),
        "policies/refunds": ("Refunds", [
            ("Refund timing", f"We issue your refund within {f['refund_business_days']} business days of the "
             "return reaching our warehouse. Your bank then needs "
             f"{f['bank_days']} business days to show it on your statement."),
            ("Refund method", "Refunds always go back to the original payment method. Orders paid with a gift card "
             "are refunded as store credit. We cannot refund to a different card or bank account."),
            ("Partial refunds", "If an item comes back damaged or incomplete we refund the item price minus the "
             "cost of the missing part. Original shipping fees are refunded only when the item was faulty."),
        ]),
        "policies/shipping": ("Shipping and delivery", [
            ("Delivery times", f"Standard delivery takes {f['standard_days']} business days. Express delivery "
             f"takes {f['express_days']} business days when you order before 2 pm. We ship Monday to Friday."),
            ("Shipping costs", f"Standard delivery is free on orders over ${f['free_shipping_over']}; below that it "
             f"costs {f['standard_fee']}. Express delivery costs {f['express_fee']} on any order."),
            ("Tracking your order", "A tracking link is emailed when your parcel leaves the warehouse. Tracking can "
             "take up to 24 hours to show the first scan. If it has not moved for 5 business days, contact us and "
             "we open an investigation with the courier."),
            ("Damaged or missing items", f"Report a damaged parcel or a missing item within "
             f"{f['damage_report_hours']} hours of delivery, with photos of the box and the item. We send a "
             "replacement or refund once the report is checked."),
            ("Changing the delivery address", f"You can change the address within {f['address_change_hours']} "
             "hour(s) of placing the order, from Account > Orders. After the parcel is dispatched the address "
             "cannot be changed, but you can ask the courier to redirect it."),
        ]),
        "policies/warranty": ("Warranty and Nimbus Care+", [
            ("Standard warranty", f"Every Nimbus device has a {f['warranty_years']}-year limited warranty against "
             f"manufacturing defects. AeroBook laptops are covered for {f['laptop_warranty_years']} years. The "
             "warranty does not cover drops, liquid damage or normal wear such as battery ageing."),
            ("Nimbus Care+", f"Nimbus Care+ extends coverage to {f['care_years']} years from purchase and adds "
             f"accidental damage protection: up to {f['care_claims']} claims per year, each with a service fee of "
             f"{f['care_fee']}. You can add Care+ within {f['care_signup_days']} days of buying a device."),
            ("Making a warranty claim", "Open a claim from Account > Devices, describe the fault and attach the "
             "serial number. We email a prepaid label; repairs usually take 7 to 10 business days. If a device "
             "cannot be repaired it is replaced with the same or a newer model."),
        ]),
        "policies/billing": ("Billing and invoices", [
            ("Invoices", f"VAT invoices are available for every order under {f['invoice_menu']}. To add a company "
             "name or VAT number, edit your billing profile before downloading; invoices update within an hour."),
            ("Duplicate charges", "If you see two charges for one order, one of them is usually a pending "
             f"authorisation that your bank releases within {f['double_charge_days']} business days. If both "
             "charges are still there after that, send us the bank statement and we refund the duplicate."),
            ("Payment methods", "We accept Visa, Mastercard, American Express, PayPal and Nimbus gift cards. A "
             "declined payment is decided by your bank; check that 3-D Secure is enabled and the billing address "
             "matches the card."),
            ("Subscriptions and cancellation", "Nimbus Cloud Plan is billed monthly on the day you subscribed. "
             "You can cancel at any time from Account > Subscriptions; the plan stays active until the end of "
             "the paid month and no further charges are taken."),
        ]),
        "policies/account": ("Account and security", [
            ("Password reset", "Choose 'Forgot password' on the sign-in page. The reset link is valid for "
             f"{f['reset_link_minutes']} minutes and only the newest link works. If no email arrives, check your "
             "spam folder and that you typed the address you signed up with."),
            ("Two-factor authentication", f"When you turn on two-factor authentication you get {f['backup_codes']} "
             "single-use backup codes; keep them somewhere safe. If you lose your phone and your codes, identity "
             f"verification restores access within {f['recovery_hours']} hours."),
            ("Locked accounts", f"After {f['lock_attempts']} failed sign-in attempts your account is locked for "
             f"{f['lock_minutes']} minutes to protect it. Wait, then reset your password if you are unsure of it."),
            ("Changing your email address", "Change the email under Account > Profile. We send a confirmation link "
             f"to the new address that expires after {f['email_confirm_hours']} hours; the old address keeps "
             "working until you confirm."),
            ("Deleting your account", "Request deletion from Account > Privacy. Your account is deactivated at "
             f"once and all personal data is erased after {f['deletion_days']} days; signing in before then "
             "cancels the request. Order records required for tax are kept in anonymised form."),
        ]),
    }


def product_sections(name: str, f: dict[str, Any]) -> list[tuple[str, str]]:
    """The FAQ sections of one product: specifications, compatibility, battery or power, troubleshooting."""
    kind = f["kind"]
    w = f.get("weight_g")
    weight = f"{w / 1000:.2f} kg" if w and w >= 1000 else f"{w} g"
    reset = f"press and hold the power button for {f.get('reset_s')} seconds until the light blinks"
    if kind == "laptop":
        size = "14-inch" if "14" in name else "16-inch"
        return [
            ("Specifications", f"The {name} has a {size} display, 16 GB of memory and a 512 GB SSD. It weighs "
             f"{weight} and comes in silver and graphite."),
            ("Compatibility", f"The {name} ships with Windows 11 Home, has two Thunderbolt 4 (USB-C) ports, Wi-Fi "
             "6E and Bluetooth 5.3. It drives up to two external displays."),
            ("Battery and charging", f"Battery life is up to {f['battery']} hours of video playback. The included "
             f"65 W USB-C charger fills the battery in about {f['charge_min']} minutes."),
            ("Troubleshooting", f"If the {name} freezes or stays black, {reset}, then start it again. A blinking "
             "amber light means the battery is empty: charge it for 30 minutes first."),
        ]
    if kind in ("earbuds", "headphones"):
        case = (f" The charging case holds {f['case_total']} hours in total." if kind == "earbuds" else "")
        button = "button on the case" if kind == "earbuds" else "power button"
        water = f" They are rated {f['ip']} against sweat and splashes." if "ip" in f else ""
        return [
            ("Specifications", f"The {name} weigh {weight} each side with active noise cancellation and three "
             f"microphones.{water}" if kind == "earbuds" else
             f"The {name} weigh {weight}, fold flat, and have active noise cancellation with transparency mode."),
            ("Compatibility", f"The {name} pair over Bluetooth 5.3 with iPhone (iOS 15 or later), Android 10 or "
             "later, Windows and Mac. They can stay connected to two devices at once."),
            ("Battery and charging", f"One charge gives up to {f['battery']} hours of listening with noise "
             f"cancellation on.{case} A full charge over USB-C takes {f['charge_min']} minutes."),
            ("Troubleshooting", f"If the {name} do not pair or sound cuts out, forget them in your phone's "
             f"Bluetooth settings, then {reset.replace('power button', button)} to factory reset them."),
        ]
    if kind == "speaker":
        return [
            ("Specifications", f"The {name} is a smart speaker with {f['watts']} W of output and a far-field "
             f"microphone array. It weighs {weight}."),
            ("Compatibility", f"The {name} connects over 2.4 GHz and 5 GHz Wi-Fi and is set up with the Nimbus "
             "app on iOS or Android. It works as a Bluetooth speaker for any phone or laptop."),
            ("Power", f"The {name} has no battery and must stay plugged into its power adapter. It draws under 2 W "
             "in standby."),
            ("Troubleshooting", f"If the {name} drops off Wi-Fi, restart your router and the speaker. To factory "
             f"reset it, press and hold the mute button for {f['reset_s']} seconds until the light ring turns "
             "orange."),
        ]
    if kind == "monitor":
        return [
            ("Specifications", f"The {name} is a 27-inch 1440p IPS display with a {f['refresh']} Hz refresh rate. "
             f"With its stand it weighs {weight}."),
            ("Compatibility", f"The {name} has HDMI 2.1, DisplayPort 1.4 and a USB-C port that charges a laptop "
             f"with up to {f['usb_c_w']} W. It works with Windows, macOS and game consoles."),
            ("Power", f"The {name} has a built-in power supply and no battery; it uses about 30 W in use."),
            ("Troubleshooting", f"If the {name} shows 'No signal', check the input with the joystick menu. To "
             f"restore factory settings, hold the joystick down for {f['reset_s']} seconds."),
        ]
    if kind == "band":
        return [
            ("Specifications", f"The {name} tracks heart rate, sleep and steps, weighs {weight} and is water "
             "resistant to 5 ATM, so it can be worn in the pool."),
            ("Compatibility", f"The {name} syncs with the Nimbus app on iPhone (iOS 16 or later) and Android 11 or "
             "later over Bluetooth Low Energy."),
            ("Battery and charging", f"The battery lasts up to {f['battery_days']} days per charge. The magnetic "
             f"charger fills it in {f['charge_min']} minutes."),
            ("Troubleshooting", f"If the {name} stops syncing, restart the Nimbus app. To factory reset the band, "
             f"{reset}."),
        ]
    if kind == "camera":
        return [
            ("Specifications", f"The {name} records 4K video at 60 frames per second, weighs {weight} and is "
             f"waterproof to 10 metres. It takes microSD cards up to {f['sd_gb']} GB."),
            ("Compatibility", f"The {name} connects to the Nimbus app over Wi-Fi and Bluetooth and shows up as a "
             "webcam on Windows and Mac over USB-C."),
            ("Battery and charging", f"The removable battery records about {f['battery_min']} minutes of 4K video. "
             f"A full charge takes {f['charge_min']} minutes."),
            ("Troubleshooting", f"If the {name} freezes during recording, {reset}. Files are kept on the card."),
        ]
    if kind in ("mouse", "keyboard"):
        return [
            ("Specifications", f"The {name} is wireless, weighs {weight} and can switch between "
             f"{f['devices']} paired devices with one button."),
            ("Compatibility", f"The {name} works over Bluetooth or the included USB receiver with Windows, macOS, "
             "ChromeOS, iPadOS and Linux."),
            ("Battery and charging", f"The built-in battery lasts up to {f['battery_days']} days per charge. "
             f"Charging over USB-C takes {f['charge_min']} minutes."),
            ("Troubleshooting", f"If the {name} lags, move the USB receiver closer or switch to Bluetooth. To "
             f"re-pair, hold the device switch button for {f['reset_s']} seconds until it blinks fast."),
        ]
    if kind == "powerbank":
        return [
            ("Specifications", f"The {name} stores {f['mah']} mAh, weighs {weight} and has two USB-C ports and "
             "one USB-A port. It is allowed in cabin luggage on flights."),
            ("Compatibility", f"The USB-C port delivers up to {f['watts']} W, enough to charge most laptops, "
             "tablets and phones, including the AeroBook 14."),
            ("Battery and charging", f"A full {name} charges a typical phone about {f['phone_charges']} times. "
             f"Recharging the pack itself takes {f['charge_min']} minutes with a 65 W charger."),
            ("Troubleshooting", f"If the {name} does not charge a device, press the side button once to wake it. "
             "If the lights blink red, let it cool down before charging again."),
        ]
    if kind == "cloud":
        return [
            ("Plans and storage", f"The {name} gives {f['storage_tb']} TB of storage for {f['price']} per month "
             f"and can be used on up to {f['devices']} devices."),
            ("Compatibility", f"The {name} has apps for Windows, macOS, iOS and Android, and a web app for any "
             "browser."),
            ("Deleted files", f"Deleted files stay in the trash for {f['trash_days']} days and can be restored "
             "from the web app before they are removed for good."),
            ("Troubleshooting", f"If files stop syncing, sign out of the {name} app and sign in again. Files larger "
             "than 50 GB cannot be uploaded."),
        ]
    raise ValueError(f"unknown product kind {kind!r} for {name!r}: add it to PRODUCT_KIND and product_sections()")


def build_sections(facts: dict[str, Any]) -> list[Section]:
    """Every section of the knowledge base, policies first, then one document per product."""
    docs = dict(policy_docs(facts["policies"]))
    for name, pf in facts["products"].items():
        docs[f"products/{slug(name)}"] = (name, product_sections(name, pf))
    return [Section(id=f"{doc_id}#{slug(h)}", doc_id=doc_id, title=title, heading=h, text=body)
            for doc_id, (title, sections) in docs.items() for h, body in sections]


def to_markdown(sections: list[Section]) -> dict[str, str]:
    """doc_id -> markdown text (``# title`` then one ``## heading`` per section)."""
    out: dict[str, list[str]] = {}
    for s in sections:
        out.setdefault(s.doc_id, [f"# {s.title}\n"]).append(f"## {s.heading}\n\n{s.text}\n")
    return {doc_id: "\n".join(parts) for doc_id, parts in out.items()}


# ------------------------------------------------------------------------------------------------ questions

# (section id, question paraphrases, answer template); {..} are facts; phrased unlike the passage on purpose.
POLICY_QUESTIONS: list[tuple[str, tuple[str, ...], str]] = [
    ("policies/returns#return-window", ("How long after my parcel arrives can I still send something back?",
                                        "What's the deadline for sending back a purchase I don't like?"), "{return_days} days"),
    ("policies/returns#return-window", ("Is the period for sending back an AeroBook different from other stuff?",
                                        "How many days do I get to send back a notebook computer?"), "{laptop_return_days} days"),
    ("policies/returns#condition-of-returned-items", ("Do you charge anything if I send back an opened screen?",
                                                      "Is there a fee for taking back an unsealed laptop?"), "{restocking_fee_pct}%"),
    ("policies/returns#return-labels", ("I asked to send an item back; when will the prepaid postage sticker reach me?",),
     "{label_hours} hours"),
    ("policies/returns#exchanges", ("Until when can I swap my purchase for a different colour?",), "{exchange_days} days"),
    ("policies/refunds#refund-timing", ("You got my parcel back. How soon will I get my money?",
                                        "How quickly do you pay me back once the warehouse has my item?"),
     "{refund_business_days} business days"),
    ("policies/refunds#refund-method", ("Can the money from my return go to another credit card?",
                                        "I paid with a voucher, how will I be reimbursed?"), "original payment method"),
    ("policies/shipping#delivery-times", ("How many days does the regular delivery option take?",), "{standard_days}"),
    ("policies/shipping#shipping-costs", ("What's the minimum basket to avoid paying for postage?",
                                          "Above which amount is delivery free of charge?"), "${free_shipping_over}"),
    ("policies/shipping#shipping-costs", ("How much extra is next-day style fast delivery?",), "{express_fee}"),
    ("policies/shipping#tracking-your-order", ("My tracking hasn't updated for a while. When should I reach out to you?",),
     "5 business days"),
    ("policies/shipping#damaged-or-missing-items", ("The courier smashed my box. How long do I have to tell you?",),
     "{damage_report_hours} hours"),
    ("policies/shipping#changing-the-delivery-address", ("I typed the wrong street. Can I still fix where it's going?",),
     "{address_change_hours} hour"),
    ("policies/warranty#standard-warranty", ("For how long is a Nimbus gadget guaranteed against defects?",),
     "{warranty_years}-year"),
    ("policies/warranty#standard-warranty", ("Are laptops guaranteed for longer than other devices?",),
     "{laptop_warranty_years} years"),
    ("policies/warranty#nimbus-care", ("If I buy the extended protection plan, what does each accident repair cost me?",
                                       "What's the service fee per claim for accidental damage cover?"), "{care_fee}"),
    ("policies/warranty#nimbus-care", ("How long after buying a device can I still add the protection plan?",),
     "{care_signup_days} days"),
    ("policies/warranty#making-a-warranty-claim", ("How long does a repair under guarantee usually take?",),
     "7 to 10 business days"),
    ("policies/billing#invoices", ("Where can I get a VAT receipt for my company?",
                                   "Where do I download a tax invoice for my purchase?"), "{invoice_menu}"),
    ("policies/billing#duplicate-charges", ("My bank shows I paid twice for one order, when does the extra one go away?",),
     "{double_charge_days} business days"),
    ("policies/billing#payment-methods", ("Do you take PayPal?", "Which ways can I pay at checkout?"), "PayPal"),
    ("policies/billing#subscriptions-and-cancellation", ("If I stop my storage subscription mid-month, do I keep it until the month ends?",),
     "end of the paid month"),
    ("policies/account#password-reset", ("How long is the link to choose a new password good for?",),
     "{reset_link_minutes} minutes"),
    ("policies/account#two-factor-authentication", ("I lost the phone I use for login codes; how long until I can get back in?",),
     "{recovery_hours} hours"),
    ("policies/account#two-factor-authentication", ("How many spare one-time codes do I get with 2FA?",),
     "{backup_codes} single-use"),
    ("policies/account#locked-accounts", ("I typed my password wrong too often and I'm blocked. How long must I wait?",),
     "{lock_minutes} minutes"),
    ("policies/account#changing-your-email-address", ("I switched to a new mailbox; when does the verification link for it expire?",),
     "{email_confirm_hours} hours"),
    ("policies/account#deleting-your-account", ("If I close my profile, when is my personal information wiped?",
                                                "How long until my data is gone after I ask you to remove my account?"),
     "{deletion_days} days"),
]

# kind -> (section slug, paraphrases with {p}, answer template)
PRODUCT_QUESTIONS: dict[str, list[tuple[str, tuple[str, ...], str]]] = {
    "battery": [("battery-and-charging", ("How many hours does the {p} last away from the plug?",
                                           "How long can I use my {p} before it needs juice?"), "{battery} hours")],
    "battery_days": [("battery-and-charging", ("How many days can the {p} go between top-ups?",
                                                "How often will I need to plug in the {p}?"), "{battery_days} days")],
    "battery_min": [("battery-and-charging", ("How much footage can the {p} shoot on one battery?",), "{battery_min} minutes")],
    "charge_min": [("battery-and-charging", ("How long does it take to refill the {p} from empty?",
                                              "If the {p} is flat, how long until it's full again?"), "{charge_min} minutes")],
    "weight_g": [("specifications", ("How heavy is the {p}?", "What does the {p} weigh?"), "{weight}")],
    "reset_s": [("troubleshooting", ("My {p} is stuck, how do I wipe it back to factory state?",
                                     "What's the trick to force a hard reset on the {p}?"), "{reset_s} seconds")],
    "ip": [("specifications", ("Can I wear the {p} at the gym without sweat killing them?",), "{ip}")],
    "case_total": [("battery-and-charging", ("Counting the pocket charger, how many hours of music do the {p} give?",),
                    "{case_total} hours")],
    "watts_speaker": [("specifications", ("How loud can the {p} get, what's its wattage?",), "{watts} W")],
    "refresh": [("specifications", ("How many frames per second can the {p} display?",), "{refresh} Hz")],
    "usb_c_w": [("compatibility", ("Will the {p} power my notebook through one cable, and how much wattage?",),
                 "{usb_c_w} W")],
    "sd_gb": [("specifications", ("What's the biggest memory card the {p} accepts?",), "{sd_gb} GB")],
    "devices": [("specifications", ("Between how many computers can the {p} flip?",), "{devices} paired devices")],
    "phone_charges": [("battery-and-charging", ("How many times can the {p} refill my smartphone?",),
                       "{phone_charges} times")],
    "watts_powerbank": [("compatibility", ("What's the max output of the {p}, can it run a laptop?",), "{watts} W")],
    "storage_tb": [("plans-and-storage", ("How much space do I get with the {p}?",), "{storage_tb} TB")],
    "price": [("plans-and-storage", ("What does the {p} cost each month?",), "{price}")],
    "trash_days": [("deleted-files", ("I removed a file from the {p} by mistake; how long can I recover it?",),
                    "{trash_days} days")],
    "no_battery": [("power", ("Can I carry the {p} around unplugged?",), "no battery")],
}

KIND_QUESTION_KEYS: dict[str, tuple[str, ...]] = {
    "laptop": ("battery", "charge_min", "weight_g", "reset_s"),
    "earbuds": ("battery", "case_total", "ip", "reset_s"),
    "headphones": ("battery", "charge_min", "weight_g"),
    "speaker": ("watts_speaker", "no_battery", "reset_s"),
    "monitor": ("refresh", "usb_c_w", "weight_g"),
    "band": ("battery_days", "charge_min", "reset_s"),
    "camera": ("battery_min", "sd_gb", "weight_g"),
    "mouse": ("battery_days", "devices", "weight_g"),
    "keyboard": ("battery_days", "devices", "charge_min"),
    "powerbank": ("phone_charges", "watts_powerbank", "weight_g"),
    "cloud": ("storage_tb", "price", "trash_days"),
}


def build_questions(facts: dict[str, Any], seed: int = KB_SEED) -> list[Question]:
    """The labelled questions: one paraphrase per policy fact and per product fact, chosen with ``seed``."""
    rng = random.Random(seed + 1)
    out: list[Question] = []
    pol = facts["policies"]
    for sid, phrasings, answer in POLICY_QUESTIONS:
        out.append(Question(id=f"q{len(out):03d}", question=rng.choice(phrasings), passage_ids=(sid,),
                            answer=answer.format(**pol), topic="policy"))
    for name, pf in facts["products"].items():
        w = pf.get("weight_g")
        values = {**pf, "weight": f"{w / 1000:.2f} kg" if w and w >= 1000 else f"{w} g"}
        for key in KIND_QUESTION_KEYS[pf["kind"]]:
            for section_slug, phrasings, answer in PRODUCT_QUESTIONS[key]:
                alias = rng.choice([a for a in PRODUCTS[name] if a.lower() != name.lower()] or [name])
                text = rng.choice(phrasings).format(p=alias)
                out.append(Question(id=f"q{len(out):03d}", question=text,
                                    passage_ids=(f"products/{slug(name)}#{section_slug}",),
                                    answer=answer.format(**values), topic="product"))
    return out


def check_kb(sections: list[Section], questions: list[Question]) -> None:
    """Raise if a question points at a missing section or its gold answer is not in the gold passage."""
    if not questions:
        raise ValueError("questions.jsonl holds no questions: rebuild with `python -m helpers.data.kb build`")
    by_id = {s.id: s for s in sections}
    for q in questions:
        for pid in q.passage_ids:
            if pid not in by_id:
                raise ValueError(f"question {q.id} points at unknown section {pid!r}: fix the id in helpers/build/kb.py")
            if q.answer.lower() not in by_id[pid].text.lower():
                raise ValueError(f"question {q.id}: answer {q.answer!r} not found in {pid}: fix the template "
                                 "in helpers/build/kb.py")


# ------------------------------------------------------------------------------------------------ files


def build_kb(out_dir: Path = KB_DIR, seed: int = KB_SEED) -> dict[str, Any]:
    """Write the markdown documents, questions.jsonl, facts.json and provenance.json."""
    facts = draw_facts(seed)
    sections = build_sections(facts)
    questions = build_questions(facts, seed)
    check_kb(sections, questions)
    for doc_id, text in to_markdown(sections).items():
        path = out_dir / f"{doc_id}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    with (out_dir / "questions.jsonl").open("w", encoding="utf-8") as fh:
        for q in questions:
            fh.write(json.dumps({"id": q.id, "question": q.question, "passage_ids": list(q.passage_ids),
                                 "answer": q.answer, "topic": q.topic}, ensure_ascii=False) + "\n")
    (out_dir / "facts.json").write_text(json.dumps(facts, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    provenance = {
        "generator": GENERATOR, "seed": seed, "command": "python -m helpers.data.kb build",
        "documents": len({s.doc_id for s in sections}), "sections": len(sections), "questions": len(questions),
        "products_from": "helpers.data.generate.PRODUCTS", "synthetic": True,
        "note": "fictional company; every gold answer is checked to occur in its gold section (check_kb)",
    }
    (out_dir / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return provenance


def main(argv: list[str] | None = None) -> int:
    """``build`` writes data/kb/; ``check`` verifies the committed files against the facts."""
    parser = argparse.ArgumentParser(prog="python -m helpers.data.kb", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("build", "check"))
    parser.add_argument("--out", type=path_arg, default=KB_DIR)
    args = parser.parse_args(argv)
    if args.command == "build":
        problem = unwritable_folder(args.out)
        if problem:
            parser.error(f"--out {problem}")
        print(json.dumps(build_kb(args.out)))
        return 0
    try:
        check_kb(load_sections(args.out), load_questions(args.out))
    except (FileNotFoundError, ValueError, KeyError) as err:  # a missing, damaged or hand-edited knowledge base
        reason = str(err).strip("'\"") if isinstance(err, KeyError) else str(err)
        print(f"error: {args.out}: {reason}"[:400], file=sys.stderr)
        return 2
    print(f"ok: {args.out}")
    return 0


if __name__ == "__main__":
    from helpers.cli import run

    sys.exit(run(main))
