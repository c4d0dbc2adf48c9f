"""The `/platform` commands, run on in-memory fakes: what people see for good and bad input.

Every reply is mrkdwn Slack will render, so besides the words we check that text a
person typed can never turn into a ping, a mention or a disguised link.
"""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from catalog import Catalog
from features.kit.commands import MAX_TEXT
from kernel.errors import UsageError
from kernel.ids import EnvironmentName, ServiceName, SlackUserId
from kernel.interactions import Reply
from kernel.mrkdwn import escape
from kernel.ports.platform import AuditEntry
from tests.unit.fakes import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    ERIN,
    SAMPLE_EMAILS,
    FakeAuditLog,
    FakeDirectory,
    feature_registry,
    make_context,
    sample_catalog,
)

REGISTRY = feature_registry().commands
COMMAND_NAMES = sorted(REGISTRY.by_name)
HOSTILE = "<!channel> <@U123> <https://evil.example|docs> &"
"""Typed by someone who wants the bot to ping everyone, mention someone and lie about a link."""


async def say(text: str, *, user: str = ALICE, **context: object) -> str:
    """What the person sees: the reply's text, or the usage error's message."""
    ctx = make_context(user, **context)  # type: ignore[arg-type]
    try:
        command, args = REGISTRY.resolve(text)
        reply = await command.run(ctx, args)
    except UsageError as exc:
        return exc.message
    assert isinstance(reply, Reply)
    return reply.text


async def refused(text: str, *, user: str = ALICE, **context: object) -> UsageError:
    """The UsageError a text gets; fails the test when the command succeeds."""
    ctx = make_context(user, **context)  # type: ignore[arg-type]
    with pytest.raises(UsageError) as caught:
        command, args = REGISTRY.resolve(text)
        await command.run(ctx, args)
    return caught.value


def assert_inert(text: str, *, mentions: tuple[str, ...] = ()) -> None:
    """No control sequence but the bot's own mentions, and every `&` starts an entity."""
    rest = text
    for user in mentions:
        rest = rest.replace(f"<@{user}>", "")
    assert "<!" not in rest, text
    control = re.search(r"<[!@#]|<[a-z][a-z0-9+.-]*:", rest)
    assert control is None, f"{control.group()!r} is live mrkdwn in {text!r}"
    assert "&" not in re.sub(r"&(amp|lt|gt);", "", rest), text


# -- help -------------------------------------------------------------------------------


def test_there_are_commands_and_each_has_a_docstring() -> None:
    assert {"help", "whoami", "audit"} <= set(COMMAND_NAMES)
    for command in REGISTRY.by_name.values():
        assert type(command).__doc__, f"{command.name} has no docstring, so no help"
        assert command.summary() != command.name


async def test_help_lists_every_discovered_command_with_its_summary() -> None:
    text = await say("help")

    for command in REGISTRY.by_name.values():
        assert text.count(f"`{escape(command.full_usage())}`") == 1, command.name
        assert escape(command.summary()) in text
    assert "/platform help <command>" in text or "/platform help &lt;command&gt;" in text


@pytest.mark.parametrize("text", ["", "   ", "\n\t", " \r\n "])
async def test_empty_text_is_help(text: str) -> None:
    assert await say(text) == await say("help")


@pytest.mark.parametrize("name", COMMAND_NAMES)
async def test_help_for_one_command_shows_its_whole_docstring(name: str) -> None:
    command = REGISTRY.by_name[name]

    text = await say(f"help {name}")

    assert escape(command.full_usage()) in text
    for line in inspect.cleandoc(type(command).__doc__ or "").splitlines():
        assert escape(line) in text


async def test_help_audit_shows_more_than_the_summary() -> None:
    text = await say("help audit")

    assert "`/platform audit [service] [--user &lt;@user&gt;] [--action &lt;event&gt;]" in text
    assert "`/platform audit checkout` shows only what touched checkout" in text


async def test_help_for_a_misspelled_command_suggests_the_right_one() -> None:
    error = await refused("help hlep")

    assert "There is no command `hlep`; did you mean `help`?" in error.message
    assert "Type `/platform help` for the list." in error.message


@pytest.mark.parametrize(
    ("text", "meant"), [("hlep", "help"), ("whoamii", "whoami"), ("adit checkout", "audit")]
)
async def test_an_unknown_command_suggests_the_closest(text: str, meant: str) -> None:
    error = await refused(text)

    assert f"did you mean `{meant}`?" in error.message
    assert error.message.startswith(f"There is no command `{text.split()[0]}`")


async def test_an_unknown_command_with_nothing_close_points_at_help() -> None:
    error = await refused("deploy-everything now")

    assert "did you mean" not in error.message
    assert error.message == (
        "There is no command `deploy-everything`. Type `/platform help` for the list."
    )


@pytest.mark.parametrize("text", ["HELP", "WhoAmI", "Audit checkout"])
async def test_command_names_are_case_insensitive(text: str) -> None:
    command, _ = REGISTRY.resolve(text)
    assert command.name == text.split()[0].lower()


# -- how text is read -------------------------------------------------------------------


@pytest.mark.parametrize("text", ['audit "checkout', "audit 'checkout", "audit \u201ccheckout"])
async def test_an_unclosed_quote_says_so_and_shows_how_to_quote(text: str) -> None:
    error = await refused(text)

    assert error.message.startswith("A quote is not closed.")
    assert '`--reason "disk full"`' in error.message


async def test_curly_double_quotes_group_words_like_straight_ones() -> None:
    assert await say("audit \u201ccheckout\u201d") == await say('audit "checkout"')


async def test_curly_single_quotes_group_words_like_straight_ones() -> None:
    assert await say("help \u2018audit\u2019") == await say("help 'audit'")


async def test_a_trailing_backslash_is_not_called_an_unclosed_quote() -> None:
    error = await refused("audit checkout\\")

    assert "quote is not closed" not in error.message
    assert "\\" in error.message


async def test_a_very_long_text_is_refused_with_the_limit() -> None:
    error = await refused("audit " + "x" * 9994)

    assert error.message.startswith("That command is 10,000 characters long;")
    assert f"at most {MAX_TEXT:,}." in error.message
    assert "x" * 50 not in error.message


async def test_the_limit_itself_is_allowed() -> None:
    at_limit = "help" + " " * (MAX_TEXT - 4)
    assert len(at_limit) == MAX_TEXT
    assert await say(at_limit) == await say("help")

    error = await refused(at_limit + " ")
    assert f"{MAX_TEXT + 1:,} characters" in error.message


@pytest.mark.parametrize(
    ("text", "extra"),
    [
        ("whoami extra", "`extra`"),
        ("whoami --verbose", "`--verbose`"),
        ("audit checkout prod", "`prod`"),
        ("help audit whoami", "`whoami`"),
        ("help --all", "`--all`"),
    ],
)
async def test_extra_arguments_are_refused_with_the_usage(text: str, extra: str) -> None:
    command = REGISTRY.by_name[text.split()[0]]

    error = await refused(text)

    assert error.message == f"Unexpected {extra}."
    assert error.usage == command.full_usage()


async def test_many_extra_arguments_are_listed_shortly() -> None:
    error = await refused("whoami a b c d e f g " + "y" * 100)

    assert error.message == "Unexpected `a` `b` `c` `d` `e`."


# -- whoami -----------------------------------------------------------------------------


async def test_whoami_alice_is_a_listed_member_of_payments() -> None:
    # No user groups at all: alice is in payments only because platform.yml lists her.
    text = await say("whoami", user=ALICE, directory=FakeDirectory({}, SAMPLE_EMAILS))

    assert text.splitlines()[0] == "You are <@U01ALICE> (alice@example.com)."
    assert "*Teams:* `payments`" in text
    assert "*Services you own:* `checkout`, `refunds`" in text
    assert "*Roles:* member of payments" in text
    assert "approver" not in text
    assert "platform admin" not in text


async def test_whoami_carol_is_listed_by_email() -> None:
    text = await say("whoami", user=CAROL)

    assert "(carol@example.com)" in text
    assert "*Teams:* `search`" in text
    assert "*Services you own:* `search-api`" in text


async def test_whoami_email_match_ignores_case() -> None:
    directory = FakeDirectory({}, {CAROL: "Carol@Example.COM"})

    text = await say("whoami", user=CAROL, directory=directory)

    assert "*Teams:* `search`" in text


async def test_whoami_without_an_email_carol_is_in_no_team() -> None:
    text = await say("whoami", user=CAROL, directory=FakeDirectory({}, {}))

    assert text.splitlines()[0] == "You are <@U03CAROL>."
    assert "*Teams:* none." in text


async def test_whoami_bob_is_in_sre_through_its_user_group_and_approves_prod() -> None:
    text = await say("whoami", user=BOB)

    assert "*Teams:* `sre`" in text
    assert "member of sre" in text
    assert "approver for `prod-changes`" in text
    assert "Services you own" not in text  # sre owns no service


async def test_whoami_bob_outside_the_group_is_not_in_sre() -> None:
    text = await say("whoami", user=BOB, directory=FakeDirectory({"S02SRE": set()}, {}))

    assert "`sre`" not in text
    assert "approver" not in text


async def test_whoami_dave_is_platform_admin_through_the_admins_list() -> None:
    directory = FakeDirectory({"S03PLATFORM": set()}, SAMPLE_EMAILS)

    text = await say("whoami", user=DAVE, directory=directory)

    assert "*Roles:* platform admin" in text


async def test_whoami_the_admins_user_group_makes_a_platform_admin_too() -> None:
    directory = FakeDirectory({"S03PLATFORM": {ERIN}}, SAMPLE_EMAILS)

    text = await say("whoami", user=ERIN, directory=directory)

    assert "*Roles:* platform admin" in text


async def test_whoami_erin_in_no_team_is_told_how_to_get_added() -> None:
    text = await say("whoami", user=ERIN)

    assert "*Teams:* none." in text
    assert "Ask a platform admin to add you to your team in platform.yml" in text
    assert "*Roles:* developer (no special roles)" in text


async def test_whoami_escapes_the_email_it_shows() -> None:
    directory = FakeDirectory({}, {ERIN: "<!channel>&co@example.com"})

    text = await say("whoami", user=ERIN, directory=directory)

    assert "(&lt;!channel&gt;&amp;co@example.com)" in text
    assert_inert(text, mentions=(ERIN,))


async def test_whoami_names_policies_one_approves_through_a_user_group() -> None:
    model = sample_catalog().model
    policy = model.approval_policies[0].model_copy(
        update={
            "name": "oncall-approves",
            "approvers": model.approval_policies[0].approvers.model_copy(
                update={"teams": (), "usergroups": ("S09ONCALL",)}
            ),
        }
    )
    catalog = Catalog(model.model_copy(update={"approval_policies": (policy,)}))
    directory = FakeDirectory({"S09ONCALL": {ERIN}}, SAMPLE_EMAILS)

    text = await say("whoami", user=ERIN, catalog=catalog, directory=directory)

    assert "approver for `oncall-approves`" in text


# -- audit ------------------------------------------------------------------------------

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def entry(
    minutes: int,
    event: str,
    *,
    service: str | None = "checkout",
    environment: str | None = "prod",
    actor: str = ALICE,
    **detail: object,
) -> AuditEntry:
    return AuditEntry(
        at=T0 + timedelta(minutes=minutes),
        actor=SlackUserId(actor),
        event=event,
        service=ServiceName(service) if service else None,
        environment=EnvironmentName(environment) if environment else None,
        detail=dict(detail),
    )


def sample_audit() -> FakeAuditLog:
    return FakeAuditLog(
        [
            entry(0, "run.requested", action="rollback checkout prod"),
            entry(1, "run.requested", service="refunds", actor=BOB, action="deploy refunds"),
            entry(2, "run.failed", error="image <!channel> & friends not found"),
            entry(3, "approval.refused", service=None, environment=None, command="new-service"),
        ]
    )


async def test_audit_shows_entries_newest_first() -> None:
    text = await say("audit", audit=sample_audit())
    lines = text.splitlines()

    assert lines[0] == "*Last 4 audit entries* (newest first)"
    assert lines[1] == "`2026-03-01 09:03Z` <@U01ALICE> *approval.refused* — new-service"
    assert lines[2].startswith("`2026-03-01 09:02Z` <@U01ALICE> *run.failed* checkout/prod")
    assert lines[3] == (
        "`2026-03-01 09:01Z` <@U02BOB> *run.requested* refunds/prod — deploy refunds"
    )
    assert lines[4] == (
        "`2026-03-01 09:00Z` <@U01ALICE> *run.requested* checkout/prod — rollback checkout prod"
    )


async def test_audit_for_a_service_shows_only_that_service() -> None:
    text = await say("audit checkout", audit=sample_audit())

    assert text.splitlines()[0] == "*Last 2 audit entries for `checkout`* (newest first)"
    assert "refunds" not in text
    assert "new-service" not in text
    assert "rollback checkout prod" in text


async def test_audit_escapes_what_the_log_says() -> None:
    text = await say("audit checkout", audit=sample_audit())

    assert "(image &lt;!channel&gt; &amp; friends not found)" in text
    assert_inert(text, mentions=(ALICE,))


async def test_audit_shows_at_most_twenty_entries_the_newest() -> None:
    log = FakeAuditLog(entry(i, "run.done", command=f"cmd-{i:02}") for i in range(25))

    text = await say("audit", audit=log)

    assert text.splitlines()[0] == "*Last 20 audit entries* (newest first)"
    assert "cmd-24" in text
    assert "cmd-05" in text
    assert "cmd-04" not in text


@pytest.mark.parametrize("text", ["audit", "audit checkout"])
async def test_audit_with_no_entries_says_so(text: str) -> None:
    scope = " for `checkout`" if "checkout" in text else ""
    assert await say(text) == f"No audit entries{scope} yet."


async def test_audit_for_an_unknown_service_suggests_the_closest() -> None:
    error = await refused("audit chekout", audit=sample_audit())

    assert error.message == "No service named 'chekout'; did you mean 'checkout'?"
    assert error.usage is not None and error.usage.startswith("/platform audit [service] [--user")


async def test_audit_filters_by_user_action_and_time() -> None:
    log = sample_audit()

    by_bob = await say("audit --user <@U02BOB|bob>", audit=log)
    assert by_bob.splitlines()[0] == "*Last 1 audit entries by <@U02BOB>* (newest first)"
    assert "deploy refunds" in by_bob and "rollback" not in by_bob
    runs = await say("audit checkout --action run", audit=log)
    assert "*run.failed*" in runs and "*run.requested*" in runs
    assert "approval.refused" not in runs
    before = await say("audit --until 2026-03-01T09:02", audit=log)
    assert "run.failed" not in before and before.count("*run.requested*") == 2
    since = await say("audit --since 2026-03-01T09:02:30", audit=log)
    assert since.count("\n") == 1 and "approval.refused" in since


async def test_audit_pages_past_twenty() -> None:
    log = FakeAuditLog(entry(i % 60, "run.done", command=f"cmd-{i:02}") for i in range(45))

    first = await say("audit", audit=log)
    assert first.splitlines()[-1] == "Older entries: add `--page 2`."
    second = await say("audit --page 2", audit=log)
    assert second.splitlines()[0] == "*Audit entries 21-40* (newest first)"
    assert "cmd-24" in second and "cmd-05" in second and "cmd-25" not in second
    third = await say("audit --page 3", audit=log)
    assert "cmd-04" in third and "cmd-00" in third and "Older entries" not in third
    assert await say("audit --page 4", audit=log) == "No audit entries on page 4."


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("audit --user alice", "`--user @alice`"),
        ("audit --since yesterday", "is not a time for `--since`"),
        ("audit --page 0", "`--page` takes a number"),
        ("audit --action 'DROP TABLE'", "is not an event name"),
    ],
)
async def test_bad_audit_filters_say_what_to_type(text: str, says: str) -> None:
    error = await refused(text, audit=sample_audit())
    assert says in error.message


async def test_audit_for_a_service_with_nothing_close_lists_the_known_ones() -> None:
    error = await refused("audit zzz")

    assert error.message == "No service named 'zzz'; known: checkout, refunds, search-api."


# -- hostile and unusual text -----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        HOSTILE,
        "help <!channel>",
        f"help whoami {HOSTILE}",
        f"help '{HOSTILE}'",
        f"whoami {HOSTILE}",
        "audit <!channel>",
        f"audit '{HOSTILE}'",
        f"audit checkout {HOSTILE}",
        f"help audit {HOSTILE}",
        f"<!channel>&<@U123> {HOSTILE}",
    ],
)
async def test_typed_mrkdwn_is_escaped_in_every_reply_that_echoes_it(text: str) -> None:
    shown = await say(text, audit=sample_audit())

    assert "<!channel>" not in shown
    assert "&lt;!channel&gt;" in shown
    assert "<@U123>" not in shown
    assert "<https://evil.example" not in shown
    assert_inert(shown, mentions=(ALICE,))


async def test_every_typed_hostile_word_is_echoed_escaped() -> None:
    shown = await say(f"whoami {HOSTILE}")

    assert shown == (
        "Unexpected `&lt;!channel&gt;` `&lt;@U123&gt;` `&lt;https://evil.example|docs&gt;` `&amp;`."
    )


async def test_backticks_in_typed_text_cannot_close_the_code_span() -> None:
    shown = await say("help `<!here>`")

    assert shown.startswith("There is no command `'&lt;!here&gt;'`.")


async def test_the_help_list_has_no_raw_angle_brackets() -> None:
    text = await say("help")

    assert "<" not in text
    assert ">" not in text


@pytest.mark.parametrize(
    "text",
    [
        "help 🚀",
        "🚀",
        "whoami 🧑‍💻 ünïcødé",
        "audit 🚀",
        "audit checkout 🎉",
        "帮助",
        "help \u202eevil",  # right-to-left override
        "help zero\u200bwidth",
        "audit \x00",
        "\x00",
        "help \udcff",  # a lone surrogate, as JSON "\udcff" decodes
        "audit ☃ --reason ✓",
        "ＨＥＬＰ",  # fullwidth letters
    ],
)
async def test_unicode_and_emoji_in_arguments_never_crash(text: str) -> None:
    shown = await say(text)

    assert shown.strip()
    assert_inert(shown, mentions=(ALICE,))


async def test_an_emoji_command_is_echoed_as_typed() -> None:
    error = await refused("help 🚀")

    assert error.message.startswith("There is no command `🚀`.")


# -- any text at all --------------------------------------------------------------------

ANY_CHARACTER = st.characters(exclude_categories=())  # every category, surrogates included
SAMPLE = sample_catalog().model
SPECIAL_WORDS = [
    '"',
    "'",
    "\\",
    "\u201c",
    "\u201d",
    "\u2018",
    "\u2019",
    "`",
    "--",
    "-",
    "--reason",
    "--reason=",
    "--reason=disk full",
    "--service=checkout",
    "--",
    "<!channel>",
    "<!here>",
    "<!subteam^S02SRE>",
    "<@U123>",
    "<#C123>",
    "<https://evil.example|docs>",
    "&",
    "&amp;",
    "&lt;",
    "*bold*",
    "\x00",
    "\n",
    "\t",
    " ",
]
WORDS = st.one_of(
    st.sampled_from(COMMAND_NAMES),
    st.sampled_from(COMMAND_NAMES).map(str.upper),
    st.sampled_from(sorted({*SAMPLE.services, *SAMPLE.teams, *SAMPLE.environments})),
    st.sampled_from(SPECIAL_WORDS),
    st.from_regex(r"--[a-z]{1,8}(=[a-z]{0,5})?", fullmatch=True),
    st.text(ANY_CHARACTER, max_size=12),
)
TEXTS = st.one_of(
    st.text(ANY_CHARACTER),
    st.lists(WORDS, max_size=8).map(" ".join),
    st.tuples(st.sampled_from(COMMAND_NAMES), st.lists(WORDS, max_size=6)).map(
        lambda t: " ".join([t[0], *t[1]])
    ),
    st.tuples(st.sampled_from(COMMAND_NAMES), st.text(ANY_CHARACTER)).map(" ".join),
    st.integers(MAX_TEXT - 10, MAX_TEXT + 10).map(lambda n: ("help " + "<!x " * n)[:n]),
)
PEOPLE = st.sampled_from([ALICE, BOB, CAROL, DAVE, ERIN, "U09NOBODY"])


@pytest.mark.timeout(300)  # 2000 examples take ~15 s; leave room on a busy CI machine
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXTS, user=PEOPLE)
@example(text=HOSTILE, user=ALICE)
@example(text='audit "', user=ALICE)
@example(text="help \\", user=ALICE)
@example(text="audit <!channel>", user=ERIN)
async def test_any_text_gives_a_reply_or_a_usage_error_and_nothing_live(
    text: str, user: str
) -> None:
    ctx = make_context(user, audit=sample_audit())
    try:
        command, args = REGISTRY.resolve(text)
        reply = await command.run(ctx, args)
    except UsageError as exc:
        shown = exc.message
    else:
        assert isinstance(reply, Reply)
        shown = reply.text
    assert isinstance(shown, str)
    assert shown.strip()
    assert_inert(shown, mentions=(user, ALICE, BOB))


def test_the_quick_split_of_plain_text_is_shlexs() -> None:
    """features.kit.commands._split takes str.split for plain text: it must be shlex's."""
    import random
    import shlex

    from features.kit.commands import _SMART_QUOTES, _split

    chars = " \t\r\n\x0b\x0c\x1c\x1fab-=#\"'\\é\u201c"
    rng = random.Random(18)
    for _ in range(20_000):
        text = "".join(rng.choice(chars) for _ in range(rng.randint(0, 10)))
        try:
            expected: object = shlex.split(text.translate(_SMART_QUOTES))
        except ValueError:
            expected = ValueError
        try:
            got: object = _split(text)
        except ValueError:
            got = ValueError
        assert got == expected, text
