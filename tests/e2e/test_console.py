"""The sandbox console: transcripts end to end, clicks and modals, and its rendering.

The transcript tests run `platform-bot sandbox --script` as a person would, in a
scratch directory. The flow test drives a `Console` on a sandbox stack whose bot has a
few extra listeners (a card with buttons, a modal), since the real commands that use
buttons and modals come later. The rest are unit tests of the pure rendering functions.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from catalog.load import load_platform_model
from features.kit.context import Button, Context, Form
from kernel.interactions import Click, Reply, Submission
from sandbox.app.console import run_console
from sandbox.app.console.forms import AnswerError, Field, parse_answer, render_view
from sandbox.app.console.output import ScriptFailed, _LogCollector
from sandbox.app.console.people import describe_people
from sandbox.app.console.render import (
    Names,
    render_conversation,
    render_message,
    render_mrkdwn,
)
from sandbox.app.console.repl import Console, _contains
from sandbox.app.stack import SAMPLE_CONFIG, SANDBOX_WORKSPACE, SandboxStack, sandbox_stack
from sandbox.standins.slack_api import Message

REPO = Path(__file__).resolve().parents[2]
TOUR = REPO / "sandbox" / "scripts" / "tour.txt"
NAMES = Names.of(SANDBOX_WORKSPACE)


# --- transcripts, as a person runs them ----------------------------------------------


def sandbox(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`platform-bot sandbox ...` in a scratch directory with a minimal environment."""
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PYTHONPATH": str(REPO),  # this checkout's code, whatever is installed
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
    }
    return subprocess.run(
        [sys.executable, "-m", "sandbox.app.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def script(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "transcript.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_tour_plays_through(tmp_path: Path) -> None:
    result = sandbox(tmp_path, "--script", str(TOUR))

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert "bob    Bob SRE         team sre; approver (prod-changes, prod-secrets," in out
    assert "alice@#payments> /platform help\nplatform-bot (only you):\n" in out
    assert "  You are @alice (alice@example.com).\n  *Teams:* `payments`" in out
    assert "carol@#payments> /platform whoami" in out
    assert "  *Roles:* developer (no special roles)" in out
    assert "  No audit entries for `checkout` yet." in out
    assert "There is no command `hlep`; did you mean `help`?" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "the sandbox left files behind"


@pytest.mark.parametrize(
    "name", sorted(p.name for p in TOUR.parent.glob("*.txt") if p != TOUR), ids=str
)
def test_every_sandbox_script_plays_through(tmp_path: Path, name: str) -> None:
    """The scripts in sandbox/scripts/ are the issues' "done when" stories; each /expect
    in them is an assertion, so the sandbox must keep doing what they show."""
    result = sandbox(tmp_path, "--script", str(TOUR.parent / name))

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert result.stderr == ""


def test_a_failed_expectation_stops_the_script_with_one_line(tmp_path: Path) -> None:
    path = script(
        tmp_path,
        "# alice is not in search\n/platform whoami\n/expect Teams: search\n/platform help\n",
    )

    result = sandbox(tmp_path, "--script", str(path))

    assert result.returncode == 1
    assert result.stderr == (
        'platform-bot sandbox: transcript.txt:3: expected: "Teams: search" is not in '
        "the output of `/platform whoami`\n"
    )
    assert "*Teams:* `payments`" in result.stdout  # what it said instead is on screen
    assert "> /platform help" not in result.stdout  # nothing ran after the failure


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "/frobnicate checkout",
            "transcript.txt:2: Unknown console command /frobnicate. Type /help for the list.",
        ),
        (
            "/whoami",
            "transcript.txt:2: Unknown console command /whoami. Did you mean /platform whoami? "
            "Type /help for the list.",
        ),
        (
            "/as zed",
            "transcript.txt:2: There is no user 'zed'; the sandbox has alice, bob, carol, "
            "dave, erin.",
        ),
        (
            "/expect-not whoami",
            'transcript.txt:2: expected: "whoami" is in the output of `/platform help`',
        ),
    ],
)
def test_mistakes_in_a_script_exit_1_with_a_message(
    tmp_path: Path, line: str, message: str
) -> None:
    path = script(tmp_path, f"/platform help\n{line}\n")

    result = sandbox(tmp_path, "--script", str(path))

    assert result.returncode == 1
    assert result.stderr == f"platform-bot sandbox: {message}\n"
    assert "Traceback" not in result.stdout


def test_an_unknown_starting_user_or_missing_script_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_console(script=None, as_user="zed") == 1
    assert capsys.readouterr().err == (
        "platform-bot sandbox: there is no user 'zed'; the sandbox has alice, bob, carol, "
        "dave, erin.\n"
    )
    assert run_console(script=tmp_path / "nope.txt", as_user="alice") == 1
    assert capsys.readouterr().err.startswith(
        f"platform-bot sandbox: cannot read {tmp_path / 'nope.txt'}: No such file"
    )


# --- clicks, threads and modals, on the real bot with a few extra listeners ------------

CARD = [
    {"type": "header", "text": {"type": "plain_text", "text": "Rollback checkout prod"}},
    {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "<@U01ALICE> asks to roll back to r41"},
        "fields": [
            {"type": "mrkdwn", "text": "*Service*\ncheckout"},
            {"type": "mrkdwn", "text": "*Env*\nprod"},
        ],
    },
    {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "value": "run-1",
                "text": {"type": "plain_text", "text": "Approve"},
            },
            {
                "type": "button",
                "action_id": "form",
                "text": {"type": "plain_text", "text": "New service"},
            },
        ],
    },
]

FORM = {
    "type": "modal",
    "callback_id": "new-service",
    "title": {"type": "plain_text", "text": "New service"},
    "submit": {"type": "plain_text", "text": "Create"},
    "close": {"type": "plain_text", "text": "Cancel"},
    "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": "A repo &amp; a namespace."}},
        {
            "type": "input",
            "block_id": "name",
            "label": {"type": "plain_text", "text": "Name"},
            "element": {"type": "plain_text_input", "action_id": "v"},
        },
        {
            "type": "input",
            "block_id": "team",
            "label": {"type": "plain_text", "text": "Team"},
            "element": {
                "type": "static_select",
                "action_id": "v",
                "options": [
                    {"text": {"type": "plain_text", "text": t}, "value": t}
                    for t in ("payments", "search")
                ],
            },
        },
        {
            "type": "input",
            "block_id": "buddy",
            "optional": True,
            "label": {"type": "plain_text", "text": "Reviewer"},
            "element": {"type": "users_select", "action_id": "v"},
        },
    ],
}


@pytest.fixture
async def stack() -> AsyncIterator[SandboxStack]:
    """A sandbox bot with three extra feature handlers, written as features are."""
    async with sandbox_stack() as running:
        client = running.bot.client

        class Approve(Button):
            action_id = "approve"

            async def click(self, ctx: Context, click: Click) -> Reply | None:
                channel, ts = str(click.channel), str(click.message_ts)
                done = {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"Approved by <@{click.user}>"},
                }
                await client.chat_update(channel=channel, ts=ts, text="Approved", blocks=[done])
                await client.chat_postMessage(
                    channel=channel,
                    thread_ts=ts,
                    text="Rolled back: <https://ci.example.com/1|job>",
                )
                await client.chat_postMessage(channel="platform-audit", text="rollback approved")
                return None

        class OpenForm(Button):
            action_id = "form"

            async def click(self, ctx: Context, click: Click) -> Reply | None:
                await client.views_open(trigger_id=str(click.trigger_id), view=FORM)
                return None

        class NewService(Form):
            callback_id = "new-service"

            async def submit(self, ctx: Context, submission: Submission) -> dict[str, str] | None:
                name = submission.values["name"]
                if name == "checkout":
                    return {"name": "`checkout` exists &amp; is taken"}
                team, buddy = submission.values["team"], submission.values.get("buddy")
                reviewer = f"<@{buddy}>" if buddy else "nobody"
                await client.chat_postMessage(
                    channel="payments", text=f"Creating {name} for {team}, reviewed by {reviewer}"
                )
                return None

        features = running.bot.door.features
        features.buttons.update({"approve": Approve(), "form": OpenForm()})
        features.forms["new-service"] = NewService()
        yield running


def console(stack: SandboxStack, out: list[str]) -> Console:
    ws = stack.workspace
    return Console(
        stack,
        user=ws.user("alice"),
        channel=ws.channel("payments"),
        scripted=True,
        logs=_LogCollector(),
        write=out.append,
    )


async def play(con: Console, *lines: str) -> None:
    for line in lines:
        con.begin_output()
        await con.handle(line)


async def test_buttons_threads_and_other_channels(stack: SandboxStack) -> None:
    out: list[str] = []
    con = console(stack, out)
    await stack.bot.client.chat_postMessage(channel="payments", text="approve?", blocks=CARD)

    await play(con, "/wait 0")  # shows what is new

    assert out == [
        "platform-bot:",
        "  == Rollback checkout prod ==",
        "  @alice asks to roll back to r41",
        "  *Service*  checkout",
        "  *Env*  prod",
        "  [1] Approve  [2] New service",
    ]
    out.clear()
    await play(con, "/as bob", "1")  # bob presses Approve on the card alice saw

    assert out == [
        "(you are bob now, Bob SRE)",
        "platform-bot (edited):",
        "  Approved by @bob",
        "  ↳ platform-bot:",
        "    Rolled back: job (https://ci.example.com/1)",
        "[#platform-audit] platform-bot:",
        "  rollback approved",
    ]
    with pytest.raises(ScriptFailed, match=r"Button 1 \(Approve\) is gone: its message"):
        await play(con, "/click 1")  # the card changed: no buttons any more
    with pytest.raises(ScriptFailed, match=r"There is no button 7; buttons shown: 1, 2\."):
        await play(con, "/click 7")


async def test_a_modal_is_filled_field_by_field(stack: SandboxStack) -> None:
    out: list[str] = []
    con = console(stack, out)
    await stack.bot.client.chat_postMessage(channel="payments", text="approve?", blocks=CARD)
    await play(con, "/wait 0", "2")

    assert out[-7:] == [
        "Modal “New service” (Submit: Create · Close: Cancel)",
        "  A repo & a namespace.",
        "  Name* — text",
        "  Team* — pick one",
        "      1) payments  2) search",
        "  Reviewer — a user",
        "  (answer each field below; /cancel closes the modal)",
    ]
    assert con.prompt() == "  Name*: "
    await play(con, "checkout")
    assert con.prompt() == "  Team* (1-2): "
    with pytest.raises(ScriptFailed, match=r"Pick a number from 1 to 2 for Team\."):
        await play(con, "3")
    out.clear()
    await play(con, "Search", "-")  # by name; the optional reviewer left empty

    assert out == [
        "Slack shows these errors on the modal:",
        "  ! Name: `checkout` exists & is taken",
        "(answer those fields again)",
    ]
    assert con.prompt() == "  Name*: "
    out.clear()
    await play(con, "ledger")  # only the field in error is asked again

    assert out == [
        "platform-bot:",
        "  Creating ledger for search, reviewed by nobody",
        "(the modal closed)",
    ]
    assert con.modal is None and not stack.slack.views


async def test_the_new_service_modal_searches_its_menus_and_shows_one_template(
    stack: SandboxStack,
) -> None:
    out: list[str] = []
    con = console(stack, out)
    await play(con, "/platform new-service")
    assert con.prompt() == "  Template* (type to search): "
    assert not [line for line in out if "Node.js version" in line]  # no template chosen yet
    with pytest.raises(ScriptFailed, match=r"Which one\? node-postgres, python-fastapi"):
        await play(con, "rest")  # both titles say "REST API"
    out.clear()
    await play(con, "node")  # the bot's menu offers node-postgres only: chosen, modal updated

    shown = "\n".join(out)
    assert "Node.js version" in shown and "Python version" not in shown
    assert con.prompt() == "  Service name*: "
    await play(
        con, "ledger", "pay", "-", "-", "-", "-"
    )  # team searched; the rest (environments too) as offered
    assert con.modal is None and not stack.slack.views
    submitted = [c for c in stack.slack.calls_to("views.update") if c.ok]
    assert len(submitted) == 1


async def test_a_modal_can_be_cancelled_and_answers_checked(stack: SandboxStack) -> None:
    out: list[str] = []
    con = console(stack, out)
    await stack.bot.client.chat_postMessage(channel="payments", text="approve?", blocks=CARD)
    await play(con, "/wait 0", "2", "sidecar", "/cancel")

    assert out[-1] == "(closed the modal “New service”)"
    assert con.modal is None and not stack.slack.views
    assert con.prompt() == "alice@#payments> "


# --- rendering ---------------------------------------------------------------------------


def test_mrkdwn_reads_as_text() -> None:
    text = (
        "<@U02BOB> &amp; <@U09NOBODY|ghost> in <#C02SEARCH|search> and <#C03PLATFORM>: "
        "see <https://grafana.example.com/d/1?a=1&amp;b=2|the dashboard>, "
        "<https://example.com>, <mailto:a@example.com|a@example.com>, "
        "<!subteam^S02SRE|@sre> <!here> 1 &lt; 2 &gt; 0 `&lt;script&gt;`"
    )
    assert render_mrkdwn(text, NAMES) == (
        "@bob & @ghost in #search and #platform: "
        "see the dashboard (https://grafana.example.com/d/1?a=1&b=2), "
        "https://example.com, a@example.com, @sre @here 1 < 2 > 0 `<script>`"
    )


def test_buttons_are_numbered_across_blocks_and_menus() -> None:
    blocks = [
        {
            "type": "section",
            "block_id": "s",
            "text": {"type": "mrkdwn", "text": "*Alert* firing"},
            "accessory": {
                "type": "overflow",
                "action_id": "silence",
                "options": [
                    {"text": {"type": "plain_text", "text": "1h"}, "value": "1h"},
                    {"text": {"type": "plain_text", "text": "4h"}, "value": "4h"},
                ],
            },
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "since 10:02"}]},
        {"type": "divider"},
        {
            "type": "actions",
            "block_id": "a",
            "elements": [
                {
                    "type": "button",
                    "action_id": "ack",
                    "value": "g1",
                    "text": {"type": "plain_text", "text": "Ack"},
                },
                {
                    "type": "button",
                    "action_id": "grafana",
                    "url": "https://grafana.example.com",
                    "text": {"type": "plain_text", "text": "Grafana"},
                },
            ],
        },
    ]

    rendered = render_message(blocks, "fallback", NAMES, first_button=3, ts="1.2")

    assert rendered.lines == (
        "*Alert* firing",
        "[3] 1h [4] 4h",
        "(since 10:02)",
        "-----",
        "[5] Ack  [6] Grafana (https://grafana.example.com)",
    )
    assert [(b.number, b.action_id, b.block_id, b.value) for b in rendered.buttons] == [
        (3, "silence", "s", "1h"),
        (4, "silence", "s", "4h"),
        (5, "ack", "a", "g1"),
        (6, "grafana", "a", None),
    ]
    assert rendered.buttons[0].option == blocks[0]["accessory"]["options"][0]
    assert {b.ts for b in rendered.buttons} == {"1.2"}
    assert render_message([], "plain *text* &lt;b&gt;", NAMES).lines == ("plain *text* <b>",)
    unnumbered = render_message(blocks[3:], "", NAMES, numbered=False)
    assert unnumbered.lines == ("[Ack]  [Grafana] (https://grafana.example.com)",)
    assert unnumbered.buttons == ()


def msg(
    ts: str, text: str, *, thread_ts: str | None = None, user: str = "U0PLATFORMBOT"
) -> Message:
    return Message(
        channel="C01PAYMENTS", ts=ts, text=text, blocks=[], user=user, thread_ts=thread_ts
    )


def test_threads_are_indented_under_their_parent() -> None:
    button = {
        "type": "actions",
        "elements": [
            {"type": "button", "action_id": "x", "text": {"type": "plain_text", "text": "Retry"}}
        ],
    }
    root = msg("1.0", "Deploying checkout")
    root.blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Deploying"}}, button]
    reply = msg("2.0", "step 1 done", thread_ts="1.0")
    other = msg("3.0", "hello from <@U01ALICE>", user="U02BOB")
    late = msg("4.0", "<@U02BOB> step 2 failed", thread_ts="1.0")
    late.blocks = [button]

    rendered = render_conversation(
        [root, other, reply, late], NAMES, first_button=2, edited={"2.0"}, prefix=""
    )

    assert rendered.lines == (
        "platform-bot:",
        "  Deploying",
        "  [2] Retry",
        "  ↳ platform-bot (edited):",
        "    step 1 done",
        "  ↳ platform-bot:",
        "    [3] Retry",
        "bob:",
        "  hello from @alice",
    )
    assert [(b.number, b.ts) for b in rendered.buttons] == [(2, "1.0"), (3, "4.0")]

    alone = render_conversation([reply], NAMES, parents={"1.0": root}, prefix="[#payments] ")
    assert alone.lines == (
        "[#payments] platform-bot, in the thread of “Deploying”:",
        "    step 1 done",
    )


def test_a_view_lists_its_fields_and_answers_become_view_state() -> None:
    rendered = render_view(FORM, NAMES)
    assert rendered.lines[0] == "Modal “New service” (Submit: Create · Close: Cancel)"
    name, team, buddy = (
        Field(
            block_id=b["block_id"],
            action_id="v",
            label=b["label"]["text"],
            element=b["element"],
            optional=b.get("optional", False),
        )
        for b in FORM["blocks"][1:]
    )
    ws = SANDBOX_WORKSPACE
    assert parse_answer(name, " ledger ", ws) == {"type": "plain_text_input", "value": "ledger"}
    assert parse_answer(team, "2", ws)["selected_option"]["value"] == "search"
    assert parse_answer(team, "PAYMENTS", ws)["selected_option"]["value"] == "payments"
    assert parse_answer(buddy, "@bob", ws) == {"type": "users_select", "selected_user": "U02BOB"}
    assert parse_answer(buddy, "", ws) == {"type": "users_select", "selected_user": None}
    assert parse_answer(buddy, "-", ws) == {"type": "users_select", "selected_user": None}
    with pytest.raises(AnswerError, match=r"Name is required\."):
        parse_answer(name, "", ws)
    with pytest.raises(AnswerError, match=r"Pick a number from 1 to 2 for Team\."):
        parse_answer(team, "0", ws)
    with pytest.raises(AnswerError, match=r"Who is that\?"):
        parse_answer(buddy, "zed", ws)


def test_people_are_described_from_platform_yml() -> None:
    model = load_platform_model(SAMPLE_CONFIG)
    lines = [" ".join(line.split()) for line in describe_people(model, SANDBOX_WORKSPACE)]
    assert lines == [
        "alice Alice Payments team payments",
        "bob Bob SRE team sre; approver (prod-changes, prod-secrets, prod-access, "
        "prod-access-extend, prod-restore, large-environments, long-environments)",
        "carol Carol Search team search",
        "dave Dave Platform platform admin",
        "erin Erin Newcomer in no team",
    ]


def test_expectations_ignore_case_spacing_and_emphasis() -> None:
    output = "  *Teams:* `payments`\n  *Roles:*   member of payments"
    assert _contains(output, "teams: payments")
    assert _contains(output, "*Teams:* `payments`")
    assert _contains(output, "Roles: member of payments")
    assert not _contains(output, "Teams: search")
