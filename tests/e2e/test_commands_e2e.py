"""/platform help, whoami and audit through the whole HTTP stack, on both databases."""

from __future__ import annotations

from sandbox.app.stack import SandboxStack
from tests.harness import Chat


async def test_help_is_answered_in_the_ack(chat: Chat) -> None:
    seen = await chat.say("/platform help")
    assert seen.in_ack
    for name in ("help", "whoami", "audit"):
        assert f"/platform {name}" in seen.text


async def test_empty_text_shows_help(chat: Chat) -> None:
    seen = await chat.say("/platform")
    assert "Things you can do with /platform" in seen.text


async def test_help_for_one_command(chat: Chat) -> None:
    seen = await chat.say("/platform help audit")
    assert "/platform audit [service]" in seen.text
    assert "Every Run" in seen.text


async def test_unknown_command_gets_did_you_mean(chat: Chat) -> None:
    seen = await chat.say("/platform hlep")
    assert seen.text.startswith("There is no command `hlep`; did you mean `help`?")


async def test_whoami_listed_member(chat: Chat) -> None:
    seen = await chat.say("/platform whoami", as_user="alice")
    assert not seen.in_ack
    assert "`payments`" in seen.text
    assert "`checkout`" in seen.text


async def test_whoami_member_through_slack_usergroup_and_approver(chat: Chat) -> None:
    seen = await chat.say("/platform whoami", as_user="bob")
    assert "`sre`" in seen.text
    assert "approver for `prod-changes`" in seen.text


async def test_whoami_by_email_and_admin(chat: Chat) -> None:
    assert "`search`" in (await chat.say("whoami", as_user="carol")).text
    assert "platform admin" in (await chat.say("whoami", as_user="dave")).text


async def test_whoami_without_team_says_how_to_join(chat: Chat) -> None:
    seen = await chat.say("whoami", as_user="erin")
    assert "*Teams:* none" in seen.text
    assert "platform.yml" in seen.text


async def test_audit_empty_then_unknown_service(chat: Chat) -> None:
    assert (await chat.say("audit")).text == "No audit entries yet."
    seen = await chat.say("audit chekout")
    assert "No service named 'chekout'; did you mean 'checkout'?" in seen.text
    assert "Usage: `/platform audit [service] [--user" in seen.text


async def test_bad_arguments_get_usage(chat: Chat) -> None:
    seen = await chat.say("whoami please")
    assert "Unexpected `please`." in seen.text
    assert "Usage: `/platform whoami`" in seen.text


async def test_ten_thousand_characters(chat: Chat) -> None:
    seen = await chat.say("audit " + "x" * 10_000)
    assert seen.in_ack
    assert "10,006 characters long" in seen.text
    assert "at most 2,000" in seen.text


async def test_unicode_and_emoji(chat: Chat) -> None:
    seen = await chat.say("help 🚀ünïcødé")
    assert "There is no command `🚀ünïcødé`." in seen.text
    seen = await chat.say("whoami 🚀")
    assert "Unexpected `🚀`." in seen.text


async def test_channel_ping_and_spoofed_link_are_escaped(chat: Chat) -> None:
    for text in ("<!channel>", "<https://evil.example|docs>", "<@U02BOB>"):
        seen = await chat.say(f"help {text}")
        assert "<" not in seen.text.replace("<@", "").replace("`/platform", "")
        assert "&lt;" in seen.text
        seen = await chat.say(f"audit {text}")
        assert "&lt;" in seen.text and "<!channel>" not in seen.text


async def test_requests_are_counted_in_metrics(chat: Chat, stack: SandboxStack) -> None:
    await chat.say("whoami")
    await chat.say("hlep")
    rendered = stack.bot.metrics.render().decode()
    assert 'platform_bot_requests_total{command="whoami",outcome="ok"} 1.0' in rendered
    assert 'platform_bot_requests_total{command="unknown",outcome="usage_error"} 1.0' in rendered
    assert 'platform_bot_ack_seconds_count{kind="command"} 2.0' in rendered
