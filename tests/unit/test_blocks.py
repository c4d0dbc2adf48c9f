"""Block Kit through kernel.blocks: Slack's limits applied in one place, and used everywhere.

Each builder's output is checked by the Slack stand-in's validator (which follows Slack's
reference), so "within the limits" means what Slack would accept.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kernel.blocks import (
    SELECT_OPTIONS,
    external_select,
    input_block,
    modal,
    option,
    options_answer,
    section,
    static_select,
    text_input,
)
from kernel.mrkdwn import escape
from sandbox.standins.slack_api import validate_options_response, validate_view

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = escape("<!channel> & <@U01ALICE> ") * 400  # 14,400 characters of entities


def test_text_carrying_user_data_is_cut_to_slacks_limits_and_never_inside_an_entity() -> None:
    view = modal(
        "cb",
        HOSTILE,
        [
            section(HOSTILE),
            input_block(
                "b",
                HOSTILE,
                static_select("s", [option(HOSTILE, "v")], placeholder=HOSTILE),
                hint=HOSTILE,
            ),
            input_block("t", "Text", text_input("t", initial_value=HOSTILE, max_length=10_000)),
        ],
        submit=HOSTILE,
    )
    assert validate_view(view) == []
    texts = [
        view["title"]["text"],
        view["submit"]["text"],
        view["blocks"][0]["text"]["text"],
        view["blocks"][1]["label"]["text"],
        view["blocks"][1]["hint"]["text"],
        view["blocks"][1]["element"]["options"][0]["text"]["text"],
        view["blocks"][1]["element"]["placeholder"]["text"],
    ]
    for text in texts:
        assert text.endswith("…")
        kept = text.removesuffix("…")
        assert re.fullmatch(r"([^&]|&(amp|lt|gt);)*", kept), kept[-12:]
    assert view["blocks"][2]["element"]["max_length"] == 3000


def test_a_static_select_refuses_more_than_100_options() -> None:
    options = [option(f"team {i}", f"t{i}") for i in range(SELECT_OPTIONS + 1)]
    assert static_select("s", options[:SELECT_OPTIONS])["options"][-1]["value"] == "t99"
    with pytest.raises(ValueError, match="use external_select"):
        static_select("s", options)


def test_an_external_select_opens_with_its_list_and_answers_at_most_100() -> None:
    element = external_select("team", placeholder="Choose", initial=option("payments", "p"))
    assert element["min_query_length"] == 0 and element["initial_option"]["value"] == "p"
    assert "options" not in element
    answer = options_answer([option(f"t{i}", f"t{i}") for i in range(500)])
    assert len(answer["options"]) == 100 and validate_options_response(answer) == []


def test_a_modal_refuses_what_slack_would() -> None:
    with pytest.raises(ValueError, match="1 to 100 blocks"):
        modal("cb", "Title", [section("x")] * 101)
    with pytest.raises(ValueError, match="private_metadata"):
        modal("cb", "Title", [section("x")], private_metadata="m" * 3001)


def test_block_kit_is_built_only_through_kernel_blocks() -> None:
    """No feature, engine or app module writes a select, an input, a text object or a modal
    by hand: each would be one more place where a limit is forgotten."""
    raw = re.compile(r'"type":\s*"(static_select|external_select|input|plain_text|modal)"')
    offenders = [
        str(path.relative_to(ROOT))
        for room in ("features", "engine", "app")
        for path in sorted((ROOT / room).rglob("*.py"))
        if raw.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
