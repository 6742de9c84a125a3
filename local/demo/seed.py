"""Deterministic seed data for the demo site: an inbox and an investor CRM.

The seed is built so one run of the demo workflow exercises every branch: of five emails,
three come from investors (Sarah Chen is already in the CRM with an outdated focus, so her
record is updated; Marcus Adeyemi and Priya Raman are new, so they are added) and two do not
(a newsletter and a customer-support ticket), so they are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

DEMO_EMAIL = "demo@aef.test"
DEMO_PASSWORD = "aef-demo-password"  # noqa: S105 - public credential of a local demo site
DEMO_USER_NAME = "Demo Operator"


@dataclass
class Email:
    id: str
    sender: str
    company: str
    sender_email: str
    phone: str
    subject: str
    category: str  # Investor | Newsletter | Customer support
    received: str  # ISO date, shown in the inbox
    investment_focus: str
    summary: str
    body: str
    processed: bool = False


@dataclass
class Record:
    id: str
    name: str
    company: str
    email: str
    phone: str
    investment_focus: str
    notes: str


def seed_emails() -> list[Email]:
    """A fresh copy of the inbox, newest first."""
    return [
        Email(
            id="t1",
            sender="Sarah Chen",
            company="Horizon Ventures",
            sender_email="sarah.chen@horizonvc.example",
            phone="+1 415 555 0134",
            subject="Following up on your seed round",
            category="Investor",
            received="2025-01-15",
            investment_focus="Seed-stage B2B SaaS",
            summary="Wants a call next week to discuss leading the seed round.",
            body=(
                "Hi team,\n\nThanks for the deck. Since we last spoke our focus has moved to "
                "seed-stage B2B SaaS, which fits you well. Could we find 30 minutes next week "
                "to talk about leading the round?\n\nBest,\nSarah"
            ),
        ),
        Email(
            id="t2",
            sender="Growth Digest",
            company="Growth Digest Media",
            sender_email="newsletter@growthdigest.example",
            phone="",
            subject="This week: 7 pricing experiments that worked",
            category="Newsletter",
            received="2025-01-15",
            investment_focus="",
            summary="Weekly newsletter about SaaS pricing experiments.",
            body=(
                "This week we look at seven pricing experiments from early-stage companies, "
                "and what they learned. Unsubscribe at any time."
            ),
        ),
        Email(
            id="t3",
            sender="Marcus Adeyemi",
            company="Northwind Capital",
            sender_email="marcus@northwind.example",
            phone="+44 20 7946 0321",
            subject="Intro from Dana: climate software",
            category="Investor",
            received="2025-01-14",
            investment_focus="Climate tech, Series A",
            summary="Introduced by Dana; interested in the Series A, asks for the data room.",
            body=(
                "Hello,\n\nDana suggested I reach out. Northwind invests in climate software at "
                "Series A and your traction caught our eye. Could you share access to the data "
                "room?\n\nRegards,\nMarcus"
            ),
        ),
        Email(
            id="t4",
            sender="Jordan Miles",
            company="Brightside Bakery",
            sender_email="jordan@brightside.example",
            phone="+1 312 555 0199",
            subject="Invoice INV-2041 charged twice",
            category="Customer support",
            received="2025-01-13",
            investment_focus="",
            summary="Customer reports a duplicate charge on invoice INV-2041.",
            body=(
                "Hi, our card was charged twice for invoice INV-2041 this month. Can you "
                "refund the duplicate payment? Thanks, Jordan"
            ),
        ),
        Email(
            id="t5",
            sender="Priya Raman",
            company="Lattice Partners",
            sender_email="priya@latticepartners.example",
            phone="+1 646 555 0178",
            subject="Pre-seed developer tools thesis",
            category="Investor",
            received="2025-01-12",
            investment_focus="Developer tools, pre-seed",
            summary="Shares her developer-tools thesis and proposes coffee next Thursday.",
            body=(
                "Hi!\n\nI lead pre-seed developer tools investments at Lattice. I wrote up our "
                "thesis (attached) and would love to grab coffee next Thursday.\n\nPriya"
            ),
        ),
    ]


def seed_records() -> list[Record]:
    """A fresh copy of the CRM table."""
    return [
        Record(
            id="rec-1",
            name="Sarah Chen",
            company="Horizon Ventures",
            email="sarah.chen@horizonvc.example",
            phone="+1 415 555 0134",
            investment_focus="Consumer marketplaces",
            notes="Met at the SaaStr dinner in 2024.",
        ),
        Record(
            id="rec-2",
            name="Daniel Kim",
            company="Bluebird Capital",
            email="daniel@bluebird.example",
            phone="+1 617 555 0112",
            investment_focus="Fintech infrastructure",
            notes="Passed on the pre-seed; check back after launch.",
        ),
        Record(
            id="rec-3",
            name="Elena Rossi",
            company="Via Nova Ventures",
            email="elena@vianova.example",
            phone="+39 02 5555 0147",
            investment_focus="European B2B software",
            notes="Warm intro via the accelerator.",
        ),
    ]
