"""Grounding rules that need no browser: parsing SOP phrasings, name matching, value binding."""

from __future__ import annotations

from runner.grounding import _bind_description, _score, match_summary
from runner.instructions import parse_instruction


def test_the_template_is_parsed_before_values_are_filled_in() -> None:
    parsed = parse_instruction("Type {{company}} into the Company name field")
    assert parsed is not None and parsed.value == "{{company}}"
    assert parsed.targets[0] == "Company name"
    # a literal value with " to " / " in " does not split the sentence either
    literal = parse_instruction("Type Back to Basics Bakery into the Company name field")
    assert literal is not None and literal.value == "Back to Basics Bakery"
    assert literal.targets[0] == "Company name"
    on = parse_instruction("Enter Sign in on Monday in the Subject field")
    assert on is not None and on.value == "Sign in on Monday" and on.targets[0] == "Subject"


def test_a_described_value_is_bound_to_a_variable_or_refused() -> None:
    parsed = parse_instruction("Type the company name into the Company name field")
    assert parsed is not None and parsed.describes
    assert _bind_description("the company name", ["companyName"]) == "{{companyName}}"
    assert _bind_description("the customer's email", ["customer_email"]) == \
        "{{customer_email}}"
    assert _bind_description("the company name", ["company"]) is None
    quoted = parse_instruction("Type 'the company name' into the Notes field")
    assert quoted is not None and not quoted.describes


def test_sop_phrasings() -> None:
    cases = {
        "Go back": ("back", ()),
        "Go to page 2": ("click", ("Page 2",)),
        "Enter ada_l as the display name": ("fill", ("display name",)),
        "Turn on Mentions": ("check", ("Mentions",)),
        "Toggle off Weekly digest": ("uncheck", ("Weekly digest",)),
        "Disable product updates": ("uncheck", ("product updates",)),
        "Mark as read": ("click", ("Mark as read",)),
        "Close the dialog": ("click", ("Close",)),
        "Sign in with Google": ("click", ("Sign in with Google",)),
        "Click Settings": ("click", ("Settings",)),
    }
    for text, (action, targets) in cases.items():
        parsed = parse_instruction(text)
        assert parsed is not None, text
        assert parsed.action == action, (text, parsed)
        assert parsed.targets[:len(targets)] == targets, (text, parsed)
    follow = parse_instruction("Follow Marcus Webb")  # a control may be named so
    assert follow is not None and follow.targets == ("Follow Marcus Webb",)
    assert follow.alternatives[0].targets[0] == "Marcus Webb"
    star = parse_instruction("Star the email from Sarah Chen")
    assert star is not None
    assert any(r.targets == ("Star",) and r.context == ("Sarah Chen",)
               for r in star.alternatives)
    mark = parse_instruction("Mark the email from Priya as read")
    assert mark is not None and mark.targets == ("Mark as read",) and mark.context == ("Priya",)
    first = parse_instruction("Open the first unread email")
    assert first is not None
    assert any(r.item and r.ordinal == 1 and r.qualifiers == ("unread",)
               for r in first.alternatives)
    name = parse_instruction("Type Ada into the First name field")
    assert name is not None and name.targets[0] == "First name" and name.ordinal is None
    cell = parse_instruction("Click the Firm cell for Marcus Webb")
    assert cell is not None
    assert any(r.targets[0] == "Firm" and r.context == ("Marcus Webb",) and "gridcell" in r.roles
               for r in cell.alternatives)


def test_names_are_matched_as_people_read_them() -> None:
    assert _score("Discard draft", "Discard draft \u202a(Ctrl-Shift-D)\u202c")[0] == 1.0
    assert _score("Bold", "Bold \u2318B")[0] == 1.0
    assert _score("Country", "Country/Region") == (0.9, "combined label")
    assert _score("Mobile phone number", "Email or mobile phone number") == (
        0.9, "combined label")
    assert _score("Issues", "Issues 12")[0] >= 0.97
    assert _score("Close", "Close dialog")[0] >= 0.97
    assert _score("Star", "Not starred") == (0.9, "state name")
    assert _score("Star", "Starred")[0] == 0.0  # a different state, not the action
    assert _score("Log in", "Sign in")[0] == 1.0
    assert _score("First name", "First name (optional)")[0] == 1.0
    # a partial match stays below an exact one by more than the margin
    assert _score("Phone", "Phone number")[0] < 0.9
    assert _score("Email", "Your email")[0] < 0.75


def test_match_summary_names_the_element_and_the_runner_up() -> None:
    text = match_summary({"role": "button", "name": "Next", "how": "name exact", "score": 1.0,
                          "runnerUp": {"description": 'link "Next page"', "score": 0.7},
                          "margin": 0.3})
    assert 'button "Next"' in text and "runner-up" in text and "margin 0.30" in text
    assert match_summary(None) == ""
