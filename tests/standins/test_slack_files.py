"""The Slack stand-in's external upload flow, as slack_sdk's `files_upload_v2` drives it
(https://docs.slack.dev/reference/methods/files.getUploadURLExternal,
https://docs.slack.dev/reference/methods/files.completeUploadExternal)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.app.stack import SANDBOX_WORKSPACE
from sandbox.standins.slack_api import SlackStandIn

PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 100


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    standin = SlackStandIn(SANDBOX_WORKSPACE)
    await standin.start()
    yield standin
    await standin.stop()


@pytest.fixture
async def client(slack: SlackStandIn) -> AsyncIterator[AsyncWebClient]:
    web = AsyncWebClient(token=SANDBOX_WORKSPACE.bot_token, base_url=slack.api_url)
    yield web
    if web.session is not None:
        await web.session.close()


async def test_files_upload_v2_shares_the_file_in_a_thread(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    root = await client.chat_postMessage(channel="C01PAYMENTS", text="deploy")

    done = await client.files_upload_v2(
        content=PNG,
        filename="chart.png",
        title="Chart",
        alt_txt="errors over time",
        channel="C01PAYMENTS",
        thread_ts=root["ts"],
    )

    file_id = done["files"][0]["id"]
    assert done["files"][0]["title"] == "Chart"
    assert [c.method for c in slack.calls] == [
        "chat.postMessage",
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
    ]
    stored = slack.files[file_id]
    assert (stored.content, stored.alt_txt, stored.completed) == (PNG, "errors over time", True)
    (reply,) = [m for m in slack.thread("C01PAYMENTS", root["ts"]) if m.files]
    assert reply.files[0]["name"] == "chart.png"
    assert reply.thread_ts == root["ts"]


async def test_get_upload_url_needs_a_filename_and_a_length(client: AsyncWebClient) -> None:
    for arguments in ({"filename": "a.png"}, {"length": 10}, {"filename": "a", "length": 0}):
        with pytest.raises(SlackApiError) as refused:
            await client.api_call("files.getUploadURLExternal", params=arguments)
        assert refused.value.response["error"] == "invalid_arguments"


async def test_complete_refuses_an_unknown_or_unuploaded_file_and_is_called_once(
    slack: SlackStandIn, client: AsyncWebClient
) -> None:
    issued = await client.files_getUploadURLExternal(filename="a.png", length=len(PNG))
    with pytest.raises(SlackApiError) as early:
        await client.files_completeUploadExternal(files=[{"id": issued["file_id"]}])
    assert early.value.response["error"] == "file_not_found"

    async with aiohttp.ClientSession() as http:
        wrong = await http.post(issued["upload_url"], data=b"short")
        assert wrong.status == 400  # not the length declared
        right = await http.post(issued["upload_url"], data=PNG)
        assert right.status == 200

    with pytest.raises(SlackApiError) as threaded_on_reply:
        root = await client.chat_postMessage(channel="C01PAYMENTS", text="root")
        reply = await client.chat_postMessage(channel="C01PAYMENTS", text="r", thread_ts=root["ts"])
        await client.files_completeUploadExternal(
            files=[{"id": issued["file_id"]}], channel_id="C01PAYMENTS", thread_ts=reply["ts"]
        )
    assert threaded_on_reply.value.response["error"] == "invalid_thread_ts"

    await client.files_completeUploadExternal(files=[{"id": issued["file_id"]}])
    with pytest.raises(SlackApiError) as twice:
        await client.files_completeUploadExternal(files=[{"id": issued["file_id"]}])
    assert twice.value.response["error"] == "file_not_found"
    assert slack.files[issued["file_id"]].channel is None  # no channel: private
