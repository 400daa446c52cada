"""The analysis check run's buttons, decided in the core (core/checkrun.py): within GitHub's
limits (label 20, description 40, identifier 20 characters), and a deploy button that names
exactly one environment however long its name (issue 14, point 10)."""

from __future__ import annotations

import pytest

from pipeline_bot.core import checkrun
from pipeline_bot.core.commands import CommandSyntaxError

CONFIGURED = ["preproduction-eu", "preproduction", "staging"]


@pytest.mark.parametrize("first", CONFIGURED)
def test_the_deploy_button_names_exactly_its_environment_never_a_prefix(first):
    others = [name for name in CONFIGURED if name != first]
    deploy, reanalyze = checkrun.actions([first, *others])
    for button in (deploy, reanalyze):
        assert len(button["label"]) <= 20, button
        assert len(button["description"]) <= 40, button
        assert len(button["identifier"]) <= 20, button
    assert reanalyze["identifier"] == "reanalyze"
    kind, _, token = deploy["identifier"].partition(":")
    assert kind == "deploy"
    assert checkrun.button_environment(token, CONFIGURED) == first


def test_a_button_for_an_environment_no_longer_configured_is_refused():
    deploy, _ = checkrun.actions(["preproduction-eu"])
    token = deploy["identifier"].partition(":")[2]
    with pytest.raises(CommandSyntaxError, match="no longer in the configuration"):
        checkrun.button_environment(token, ["preproduction-eu1", "preproduction"])
    # a button from before the hashes, cut at 20 characters: it cannot say what it meant
    with pytest.raises(CommandSyntaxError, match="no longer in the configuration"):
        checkrun.button_environment("preproduction", CONFIGURED)
    assert checkrun.button_environment("staging", CONFIGURED) == "staging"  # never cut


def test_without_environments_there_is_only_the_re_analyze_button():
    assert [b["identifier"] for b in checkrun.actions([])] == ["reanalyze"]


@pytest.mark.parametrize("approve", ["production", "preproduction-eu", "p" * 63])
def test_the_approve_button_names_exactly_its_environment_within_githubs_limits(approve):
    configured = [*CONFIGURED, "production", "p" * 63, "p" * 62]
    buttons = checkrun.actions(["staging"], approve)
    assert len(buttons) <= checkrun.MAX_ACTIONS
    assert [b["identifier"].partition(":")[0] for b in buttons] == [
        "deploy",
        "approve",
        "reanalyze",
    ]
    for button in buttons:
        assert len(button["label"]) <= 20, button
        assert len(button["description"]) <= 40, button
        assert len(button["identifier"]) <= 20, button
    token = buttons[1]["identifier"].partition(":")[2]
    assert checkrun.button_environment(token, configured, checkrun.APPROVE_BUTTON) == approve


def test_an_approve_button_for_an_environment_no_longer_configured_is_refused():
    token = checkrun.actions([], "production")[0]["identifier"].partition(":")[2]
    with pytest.raises(CommandSyntaxError, match="`/approve <environment>`"):
        checkrun.button_environment(token, ["staging"], checkrun.APPROVE_BUTTON)
    # a name is never taken as it is for an approve button: every approve button is hashed
    with pytest.raises(CommandSyntaxError, match="no longer in the configuration"):
        checkrun.button_environment("staging", ["staging"], checkrun.APPROVE_BUTTON)


def test_without_an_environment_that_requires_approval_there_is_no_approve_button():
    assert [b["identifier"].partition(":")[0] for b in checkrun.actions(["staging"])] == [
        "deploy",
        "reanalyze",
    ]
