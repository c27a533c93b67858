"""How leadbot's WebClient reaches Slack: one kept-alive connection per thread, the same answers
and errors as slack_sdk's own urllib transport, and urllib again behind a proxy."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trustme

from bot.delivery import (
    MAX_RETRY_AFTER,
    DeliveryError,
    KeepAliveWebClient,
    Slack,
    make_web_client,
)
from bot.render import Message
from bot.slack_emulator import SlackEmulator
from tests.conftest import LEADS_CHANNEL, Bot

CARD = Message(
    text="a card", blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
)


def _posted(slack: SlackEmulator) -> list[str]:
    return [str(c.args.get("text")) for c in slack.calls_to("chat.postMessage") if c.ok]


def test_calls_from_one_thread_share_one_connection(slack: SlackEmulator) -> None:
    to_slack = Slack(make_web_client("xoxb-test", slack.url, retries=False))
    for _ in range(5):
        channel, ts = to_slack.post(LEADS_CHANNEL, CARD)
        assert channel == LEADS_CHANNEL and ts
    to_slack.update(LEADS_CHANNEL, ts, Message(text="edited"))

    assert _posted(slack) == ["a card"] * 5
    assert slack.calls_to("chat.update")[0].ok
    assert slack.connections_opened == 1


def test_each_thread_keeps_its_own_connection(slack: SlackEmulator) -> None:
    to_slack = Slack(make_web_client("xoxb-test", slack.url, retries=False))
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def post_three(n: int) -> None:
        try:
            start.wait(timeout=5)
            for i in range(3):
                to_slack.post(LEADS_CHANNEL, Message(text=f"thread {n} post {i}"))
        except BaseException as e:  # reported below, with the test's own assertion
            errors.append(e)

    threads = [threading.Thread(target=post_three, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)

    assert errors == []
    assert sorted(_posted(slack)) == sorted(
        f"thread {n} post {i}" for n in range(4) for i in range(3)
    )
    assert slack.connections_opened == 4


def test_over_https_one_handshake_serves_many_calls() -> None:
    # Slack is HTTPS: the handshake each call used to pay is what keeping connections saves.
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    with SlackEmulator(tls=server_context) as slack:
        assert slack.url.startswith("https://")
        client = KeepAliveWebClient(token="xoxb-test", base_url=slack.url, ssl=client_context)
        for i in range(3):
            Slack(client).post(LEADS_CHANNEL, Message(text=f"post {i}"))

        assert _posted(slack) == ["post 0", "post 1", "post 2"]
        assert slack.connections_opened == 1
        # A client that does not trust the certificate is refused, so TLS really was in use.
        with pytest.raises(DeliveryError) as untrusted:
            Slack(KeepAliveWebClient(token="xoxb-test", base_url=slack.url)).post(
                LEADS_CHANNEL, CARD
            )
        assert untrusted.value.code == "connection_error: URLError"
        assert len(_posted(slack)) == 3


def test_a_connection_the_server_closed_is_replaced_without_an_error(
    slack: SlackEmulator,
) -> None:
    # No retry handlers: a request sent on the dead connection would surface as an error.
    to_slack = Slack(make_web_client("xoxb-test", slack.url, retries=False))
    to_slack.post(LEADS_CHANNEL, Message(text="before"))
    slack.drop_connections()

    to_slack.post(LEADS_CHANNEL, Message(text="after"))

    assert _posted(slack) == ["before", "after"]
    assert slack.connections_opened == 2


def test_a_connection_idle_too_long_is_not_reused(slack: SlackEmulator) -> None:
    client = KeepAliveWebClient(token="xoxb-test", base_url=slack.url, idle_reuse=0)
    to_slack = Slack(client)
    for i in range(3):
        to_slack.post(LEADS_CHANNEL, Message(text=f"post {i}"))

    assert _posted(slack) == ["post 0", "post 1", "post 2"]
    assert slack.connections_opened == 3


ROOT = Path(__file__).resolve().parent.parent

# Run in a process of its own: in a test worker, threads left by earlier tests may close
# descriptors below 1100 at any moment, and the socket would then take one of those.
_PAST_1023 = """
import os, resource, sys
from bot.delivery import KeepAliveWebClient, Slack
from bot.render import Message

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
fillers = []
while not fillers or fillers[-1] < 1100:
    fillers.append(os.open(os.devnull, os.O_RDONLY))
client = KeepAliveWebClient(token="xoxb-test", base_url=sys.argv[1])
for i in range(3):
    Slack(client).post(sys.argv[2], Message(text=f"post {i}"))
print(client._local.held.conn.sock.fileno())
"""


def test_reuse_holds_on_descriptors_past_1023(slack: SlackEmulator) -> None:
    # A busy process can hold over a thousand sockets; select() cannot watch those.
    run = subprocess.run(
        [sys.executable, "-c", _PAST_1023, slack.url, LEADS_CHANNEL],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) > 1023  # the case this test is about
    assert _posted(slack) == ["post 0", "post 1", "post 2"]
    assert slack.connections_opened == 1


def test_error_answers_keep_their_meaning_and_the_connection(slack: SlackEmulator) -> None:
    to_slack = Slack(make_web_client("xoxb-test", slack.url, retries=False))
    slack.fail("chat.postMessage", retry_after=7)
    with pytest.raises(DeliveryError) as limited:
        to_slack.post(LEADS_CHANNEL, CARD)
    slack.fail("chat.postMessage", status=503)
    with pytest.raises(DeliveryError) as down:
        to_slack.post(LEADS_CHANNEL, CARD)
    slack.fail("chat.postMessage", error="channel_not_found")
    with pytest.raises(DeliveryError) as missing:
        to_slack.post(LEADS_CHANNEL, CARD)
    to_slack.post(LEADS_CHANNEL, CARD)

    assert (limited.value.code, limited.value.retry_after) == ("ratelimited", 7.0)
    assert down.value.code == "http_503" and down.value.transient
    assert missing.value.code == "channel_not_found" and not missing.value.transient
    assert _posted(slack) == ["a card"]
    # Answers with an error status are whole answers: the connection stays usable.
    assert slack.connections_opened == 1


def test_a_retry_after_of_days_is_taken_as_an_hour(slack: SlackEmulator) -> None:
    to_slack = Slack(make_web_client("xoxb-test", slack.url, retries=False))
    slack.fail("chat.postMessage", retry_after=10**30)  # once: OverflowError in the outbox
    with pytest.raises(DeliveryError) as limited:
        to_slack.post(LEADS_CHANNEL, CARD)
    assert (limited.value.code, limited.value.retry_after) == ("ratelimited", MAX_RETRY_AFTER)
    assert MAX_RETRY_AFTER == 3600.0


def test_the_retry_handlers_still_retry_a_rate_limited_call(slack: SlackEmulator) -> None:
    to_slack = Slack(make_web_client("xoxb-test", slack.url))
    slack.fail("chat.postMessage", retry_after=0, status=429)

    to_slack.post(LEADS_CHANNEL, CARD)

    assert [c.status for c in slack.calls_to("chat.postMessage")] == [429, 200]


def test_a_call_that_times_out_is_an_error_and_the_next_one_gets_a_new_connection(
    slack: SlackEmulator,
) -> None:
    to_slack = Slack(make_web_client("xoxb-test", slack.url, timeout=1, retries=False))
    to_slack.post(LEADS_CHANNEL, Message(text="first"))
    slack.fail("chat.postMessage", hang=3)
    with pytest.raises(DeliveryError) as timed_out:
        to_slack.post(LEADS_CHANNEL, Message(text="slow"))
    to_slack.post(LEADS_CHANNEL, Message(text="third"))

    assert timed_out.value.code.startswith("connection_error") and timed_out.value.transient
    assert "third" in _posted(slack)
    # The timed-out connection may still get its late answer: it must not be read as the next.
    assert slack.connections_opened == 2


def test_an_environment_proxy_is_honoured(
    slack: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The emulator stands in for the proxy: urllib sends it the absolute URL, which it serves.
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{slack.port}")
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    to_slack = Slack(make_web_client("xoxb-test", "http://slack.invalid/api/", retries=False))

    to_slack.post(LEADS_CHANNEL, CARD)

    assert _posted(slack) == ["a card"]


def test_the_running_bot_reuses_its_slack_connections(bot: Bot) -> None:
    for n in range(40):
        bot.submit(f"Ann Lee {n}, ann{n}@globex.example, Globex, hot, #SaaStr2026")

    calls = len(bot.slack.calls)
    assert len(bot.slack.calls_to("chat.postMessage")) >= 40
    # A connection per thread that calls Slack (outbox deliverers, notes, start-up), not per
    # call: slack_sdk's own transport opens one for each.
    assert bot.slack.connections_opened <= calls // 2
