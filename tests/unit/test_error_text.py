"""What a person reads when a step's error handler asks them for help."""

from runner.errors import then_tell


def test_the_hint_follows_a_message_that_already_ends_a_sentence() -> None:
    assert then_tell("Timeout 500ms exceeded.", "Type it by hand") == (
        "Timeout 500ms exceeded. Type it by hand")
    assert then_tell("Is the form gone? ", "Open it again") == "Is the form gone? Open it again"


def test_a_message_without_a_full_stop_gets_one() -> None:
    assert then_tell("Expected 'Page 5', saw 'Page 1'", "Open page 5 yourself") == (
        "Expected 'Page 5', saw 'Page 1'. Open page 5 yourself")
