"""The Slack emulator and simulator, exercised over real HTTP with the real slack_sdk client."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.error import URLError
from urllib.parse import parse_qsl

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from bot.slack_emulator import Call, SlackEmulator
from bot.slack_sim import Response, SlackSim, state_values

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CLAIM_BLOCKS = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*New lead*"}},
    {
        "type": "actions",
        "block_id": "lead_actions",
        "elements": [
            {
                "type": "button",
                "action_id": "lead_claim",
                "text": {"type": "plain_text", "text": "Claim"},
                "value": "42",
            }
        ],
    },
]


@pytest.fixture
def emu() -> Iterator[SlackEmulator]:
    with SlackEmulator() as emulator:
        yield emulator


@pytest.fixture
def client(emu: SlackEmulator) -> WebClient:
    # No retry handlers: each test states which retries it wants.
    return WebClient(token="xoxb-test", base_url=emu.url, retry_handlers=[])


class Receiver:
    """A tiny app stand-in that records what SlackSim sends and answers a canned reply."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 200
        self.reply = b'{"ok": true}'
        self.content_type = "application/json"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append((self.path, dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Type", receiver.content_type)
                self.send_header("Content-Length", str(len(receiver.reply)))
                self.end_headers()
                self.wfile.write(receiver.reply)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/slack/events"

    def last(self) -> tuple[str, dict[str, str], bytes]:
        assert self.requests, "the receiver got no request"
        return self.requests[-1]

    def last_payload(self) -> dict[str, Any]:
        _, headers, body = self.last()
        assert headers["Content-Type"] == "application/x-www-form-urlencoded"
        fields = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True)
        assert [k for k, _ in fields] == ["payload"]
        return json.loads(fields[0][1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=2)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


def verified(headers: dict[str, str], body: bytes, secret: str = SECRET) -> bool:
    return SignatureVerifier(secret).is_valid_request(body, headers)


# --------------------------------------------------------------------------- emulator: Web API


def test_auth_test_answers_like_slack(client: WebClient) -> None:
    resp = client.auth_test()
    assert resp["ok"] is True
    assert resp["team_id"] == "T0LEADBOT"
    assert resp["user_id"] == "U0LEADBOT"
    assert resp["bot_id"] == "B0LEADBOT"
    assert resp["url"].startswith("https://") and resp["user"] and resp["team"]


def test_post_message_resolves_channel_names_and_dms(client: WebClient, emu: SlackEmulator) -> None:
    first = client.chat_postMessage(channel="#leads", text="one", blocks=CLAIM_BLOCKS)
    second = client.chat_postMessage(channel="#leads", text="two")
    leads = emu.channel_id("#leads")
    assert leads.startswith("C") and first["channel"] == second["channel"] == leads
    assert float(first["ts"]) < float(second["ts"])
    assert first["message"]["blocks"] == CLAIM_BLOCKS
    assert first["message"]["user"] == "U0LEADBOT"

    dm = client.chat_postMessage(channel="U0ALICE", text="psst")
    opened = client.conversations_open(users="U0ALICE")
    assert dm["channel"].startswith("D") and opened["channel"]["id"] == dm["channel"]
    assert [m.text for m in emu.dms("U0ALICE")] == ["psst"]
    assert [m.text for m in emu.messages("#leads")] == ["one", "two"]
    # The recorded call keeps what the client sent, not the resolved id.
    assert emu.calls_to("chat.postMessage")[0].args["channel"] == "#leads"

    # As Slack documents for chat.update: a DM is edited by its D… id, never by the user's id.
    for method in (client.chat_update, client.chat_delete):
        with pytest.raises(SlackApiError) as refused:
            method(channel="U0ALICE", ts=dm["ts"], text="edited")
        assert refused.value.response["error"] == "channel_not_found"
    client.chat_update(channel=dm["channel"], ts=dm["ts"], text="edited")
    assert [m.text for m in emu.dms("U0ALICE")] == ["edited"]


def test_history_pages_newest_first_after_oldest(client: WebClient, emu: SlackEmulator) -> None:
    """As Slack: top-level messages only, newest first, strictly after `oldest`, `limit` at a
    time with a cursor. (Every message at once made each look-up bigger than the last.)"""
    ts = [client.chat_postMessage(channel="C0HIST", text=f"m{i}")["ts"] for i in range(7)]
    client.chat_postMessage(channel="C0HIST", text="a reply", thread_ts=ts[0])
    seen, cursor, pages = [], None, 0
    while True:
        page = client.conversations_history(
            channel="C0HIST", oldest=ts[1], limit=2, **({"cursor": cursor} if cursor else {})
        )
        seen += [m["text"] for m in page["messages"]]
        pages += 1
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not page["has_more"]:
            assert not cursor
            break
    assert (seen, pages) == (["m6", "m5", "m4", "m3", "m2"], 3)
    inclusive = client.conversations_history(channel="C0HIST", oldest=ts[5], inclusive=True)
    assert [m["text"] for m in inclusive["messages"]] == ["m6", "m5"]
    before = client.conversations_history(channel="C0HIST", latest=ts[1])
    assert [m["text"] for m in before["messages"]] == ["m0"]
    with pytest.raises(SlackApiError) as refused:
        client.conversations_history(channel="C0HIST", limit="many")
    assert refused.value.response["error"] == "invalid_arguments"


def test_threads_updates_and_permalinks(client: WebClient, emu: SlackEmulator) -> None:
    parent = client.chat_postMessage(channel="C0LEADS01", text="lead", blocks=CLAIM_BLOCKS)
    reply = client.chat_postMessage(channel="C0LEADS01", text="claimed", thread_ts=parent["ts"])
    assert reply["message"]["thread_ts"] == parent["ts"]
    assert [m.text for m in emu.thread("C0LEADS01", parent["ts"])] == ["lead", "claimed"]

    new_blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Claimed by <@U1>"}}]
    updated = client.chat_update(channel="C0LEADS01", ts=parent["ts"], text="x", blocks=new_blocks)
    assert (updated["channel"], updated["ts"], updated["text"]) == ("C0LEADS01", parent["ts"], "x")
    stored = emu.message("C0LEADS01", parent["ts"])
    assert stored is not None and stored.blocks == new_blocks and stored.updated_count == 1

    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel="C0LEADS01", ts="1.000001", text="nope")
    assert err.value.response["error"] == "message_not_found"

    link = client.chat_getPermalink(channel="C0LEADS01", message_ts=parent["ts"])["permalink"]
    expected = "https://leadbot-emulator.slack.com/archives/C0LEADS01/p" + parent["ts"].replace(
        ".", ""
    )
    assert link == expected
    reply_link = client.chat_getPermalink(channel="C0LEADS01", message_ts=reply["ts"])
    assert f"thread_ts={parent['ts']}" in reply_link["permalink"]


def test_form_encoded_bodies_tokens_and_bad_json(emu: SlackEmulator) -> None:
    form_client = WebClient(token="xoxb-test", base_url=emu.url, retry_handlers=[])
    blocks = [{"type": "divider"}]
    # api_call(params=...) sends application/x-www-form-urlencoded with blocks as a JSON string.
    resp = form_client.api_call(
        "chat.postMessage",
        params={"channel": "C0FORM001", "text": "f", "blocks": json.dumps(blocks)},
    )
    assert resp["ok"] and emu.calls_to("chat.postMessage")[-1].args["blocks"] == blocks
    assert emu.messages("C0FORM001")[0].blocks == blocks

    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=2)
    try:
        form = "token=xoxb-form&channel=C0FORM001&text=hello+there"
        conn.request(
            "POST",
            "/api/chat.postMessage",
            body=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        answer = json.loads(conn.getresponse().read())
        assert answer["ok"] and answer["message"]["text"] == "hello there"
        assert emu.calls[-1].token == "xoxb-form" and "token" not in emu.calls[-1].args

        conn.request(
            "POST",
            "/api/chat.postMessage",
            body=b"{not json",
            headers={"Content-Type": "application/json", "Authorization": "Bearer xoxb-1"},
        )
        assert json.loads(conn.getresponse().read())["error"] == "invalid_json"
    finally:
        conn.close()

    with pytest.raises(SlackApiError) as err:
        WebClient(base_url=emu.url, retry_handlers=[]).chat_postMessage(channel="C1", text="t")
    assert err.value.response["error"] == "not_authed"


def test_ephemeral_users_usergroups_and_unknown_methods(
    client: WebClient, emu: SlackEmulator
) -> None:
    eph = client.chat_postEphemeral(channel="C0LEADS01", user="U0BOB", text="only you")
    assert eph["message_ts"]
    [stored] = emu.ephemerals("U0BOB")
    assert (stored.channel, stored.ts, stored.text) == ("C0LEADS01", eph["message_ts"], "only you")

    user = client.users_info(user="U0BOB")["user"]
    assert user["id"] == "U0BOB" and user["tz"] == "UTC" and user["profile"]["display_name"]

    emu.set_usergroup("S0SALES", ["U0BOB", "U0CAROL"])
    assert client.usergroups_users_list(usergroup="S0SALES")["users"] == ["U0BOB", "U0CAROL"]

    with pytest.raises(SlackApiError) as err:
        client.api_call("chat.fly")
    assert err.value.response["error"] == "unknown_method"


def test_views_open_push_update_publish(client: WebClient, emu: SlackEmulator) -> None:
    modal = {
        "type": "modal",
        "callback_id": "lead_new",
        "title": {"type": "plain_text", "text": "New lead"},
        "blocks": [],
        "private_metadata": "C0LEADS01",
    }
    opened = client.views_open(trigger_id="111.222.aaa", view=modal)["view"]
    assert opened["id"].startswith("V") and opened["hash"]
    assert opened["callback_id"] == "lead_new" and opened["private_metadata"] == "C0LEADS01"
    assert emu.modals["111.222.aaa"]["id"] == opened["id"]

    with pytest.raises(SlackApiError) as err:
        client.views_open(trigger_id="111.222.aaa", view=modal)
    assert err.value.response["error"] == "exchanged_trigger_id"

    pushed = client.views_push(trigger_id="333.444.bbb", view=modal)["view"]
    assert pushed["id"] != opened["id"]

    changed = {**modal, "title": {"type": "plain_text", "text": "Saved"}}
    updated = client.views_update(view_id=opened["id"], view=changed, hash=opened["hash"])["view"]
    assert updated["id"] == opened["id"] and updated["hash"] != opened["hash"]
    assert emu.view(opened["id"])["title"]["text"] == "Saved"
    with pytest.raises(SlackApiError) as err:
        client.views_update(view_id=opened["id"], view=changed, hash=opened["hash"])
    assert err.value.response["error"] == "hash_conflict"

    home = {"type": "home", "blocks": [{"type": "divider"}]}
    first = client.views_publish(user_id="U0BOB", view=home)["view"]
    again = client.views_publish(user_id="U0BOB", view=home)["view"]
    assert first["id"] == again["id"] and emu.home("U0BOB")["blocks"] == [{"type": "divider"}]


def test_response_url_posts_are_recorded(emu: SlackEmulator) -> None:
    url = emu.response_url("cmd-1")
    answer = WebhookClient(url).send(text="done", replace_original=True)
    assert (answer.status_code, answer.body) == (200, "ok")
    [post] = emu.wait_for_response(name="cmd-1", timeout=1)
    assert post.url == url and post.body == {"text": "done", "replace_original": True}


# --------------------------------------------------------------------------- emulator: faults


def test_two_server_errors_then_success_with_server_error_retry_handler(
    emu: SlackEmulator,
) -> None:
    emu.fail("chat.postMessage", status=500, times=2)
    retrying = WebClient(
        token="xoxb-test",
        base_url=emu.url,
        retry_handlers=[
            ServerErrorRetryHandler(
                max_retry_count=2, interval_calculator=FixedValueRetryIntervalCalculator(0.01)
            )
        ],
    )
    resp = retrying.chat_postMessage(channel="C0LEADS01", text="after retries")
    assert resp["ok"]
    assert [c.status for c in emu.calls_to("chat.postMessage")] == [500, 500, 200]
    assert [m.text for m in emu.messages("C0LEADS01")] == ["after retries"]
    assert emu.stats["faults"] == 2


def test_429_retry_after_is_honoured_by_rate_limit_retry_handler(emu: SlackEmulator) -> None:
    emu.fail("chat.postMessage", status=429, retry_after=1)
    retrying = WebClient(
        token="xoxb-test",
        base_url=emu.url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    started = time.monotonic()
    assert retrying.chat_postMessage(channel="C0LEADS01", text="eventually")["ok"]
    assert time.monotonic() - started >= 1.0
    attempts = emu.calls_to("chat.postMessage")
    assert [(c.status, c.error) for c in attempts] == [(429, "ratelimited"), (200, None)]


def test_error_fault_raises_slack_api_error_once(client: WebClient, emu: SlackEmulator) -> None:
    emu.fail("chat.postMessage", error="channel_not_found")
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C0GONE001", text="x")
    assert err.value.response.status_code == 200
    assert err.value.response["error"] == "channel_not_found"
    assert client.chat_postMessage(channel="C0GONE001", text="x")["ok"]
    assert [c.error for c in emu.calls_to("chat.postMessage")] == ["channel_not_found", None]


def test_rate_limit_bucket_and_keep_alive(emu: SlackEmulator) -> None:
    emu.rate_limit(per_second=0.5, burst=2)
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=2)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer xoxb-test"}

    def post(channel: str) -> tuple[int, str | None, dict[str, Any]]:
        body = json.dumps({"channel": channel, "text": "hi"})
        conn.request("POST", "/api/chat.postMessage", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Retry-After"), json.loads(resp.read())

    try:
        results = [post("C0BUSY001") for _ in range(3)]
        sock = conn.sock
        other = post("C0CALM001")
        # One TCP connection served all four requests (keep-alive with sized answers).
        assert sock is not None and conn.sock is sock
    finally:
        conn.close()
    assert [r[0] for r in results] == [200, 200, 429]
    assert results[2][2] == {"ok": False, "error": "ratelimited"}
    assert int(results[2][1] or "0") >= 1
    assert other[0] == 200
    assert emu.stats["ratelimited"] == 1


def test_hang_times_out_the_client_but_the_post_lands(emu: SlackEmulator) -> None:
    emu.fail("chat.postMessage", hang=0.25)
    impatient = WebClient(token="xoxb-test", base_url=emu.url, timeout=0.05, retry_handlers=[])
    with pytest.raises((TimeoutError, URLError)):
        impatient.chat_postMessage(channel="C0SLOW001", text="slow")
    [call] = emu.wait_for("chat.postMessage", timeout=2)
    assert call.fault == "hang" and call.ok
    assert [m.text for m in emu.messages("C0SLOW001")] == ["slow"]


def test_stop_releases_a_hung_request_promptly() -> None:
    emulator = SlackEmulator().start()
    emulator.fail("auth.test", hang=30)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            WebClient(token="x", base_url=emulator.url, timeout=5, retry_handlers=[]).auth_test()
        except Exception as exc:
            errors.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    time.sleep(0.1)
    started = time.monotonic()
    emulator.stop()
    worker.join(timeout=2)
    assert time.monotonic() - started < 1.5
    assert not worker.is_alive() and len(errors) == 1
    assert emulator.calls == []


def test_latency_delays_every_answer(client: WebClient, emu: SlackEmulator) -> None:
    emu.latency(0.1)
    started = time.monotonic()
    client.auth_test()
    assert time.monotonic() - started >= 0.1


def test_wait_for_sees_async_posts_and_explains_timeouts(
    client: WebClient, emu: SlackEmulator
) -> None:
    # A blocks-only post has no "text" arg: the predicate's KeyError counts as "no match".
    client.api_call(
        "chat.postMessage", json={"channel": "C0ASYNC01", "blocks": [{"type": "divider"}]}
    )
    timer = threading.Timer(0.05, lambda: client.chat_postMessage(channel="C0ASYNC01", text="late"))
    timer.start()
    try:
        [call] = emu.wait_for(
            "chat.postMessage", predicate=lambda c: c.args["text"] == "late", timeout=2
        )
    finally:
        timer.join()
    assert isinstance(call, Call) and call.args["channel"] == "C0ASYNC01"

    with pytest.raises(AssertionError) as err:
        emu.wait_for("chat.update", timeout=0.05)
    assert "chat.update" in str(err.value) and "chat.postMessage" in str(err.value)
    with pytest.raises(AssertionError, match="response_url"):
        emu.wait_for_response(timeout=0.05)


def test_concurrent_clients_get_unique_increasing_ts(emu: SlackEmulator) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        web = WebClient(token="xoxb-test", base_url=emu.url, retry_handlers=[])
        for i in range(10):
            ts = web.chat_postMessage(channel="#busy", text=f"{n}-{i}")["ts"]
            with lock:
                results.append(ts)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    assert len(results) == len(set(results)) == 80
    stored = [m.ts for m in emu.messages("#busy")]
    assert stored == sorted(stored, key=float) and len(stored) == 80


# --------------------------------------------------------------------------- SlackSim


def test_slash_command_is_signed_form_encoded_and_escaped(receiver: Receiver) -> None:
    sim = SlackSim(receiver.url, SECRET)
    resp = sim.slash_command(
        "Jane <jane@acme.io> & co",
        "U0ALICE",
        trigger_id="123.456.abc",
        response_url="http://127.0.0.1:1/response/x",
    )
    assert isinstance(resp, Response) and resp.status == 200 and resp.json() == {"ok": True}
    path, headers, body = receiver.last()
    assert path == "/slack/events"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert verified(headers, body)
    fields = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True)
    assert [k for k, _ in fields] == [
        "token",
        "team_id",
        "team_domain",
        "channel_id",
        "channel_name",
        "user_id",
        "user_name",
        "command",
        "text",
        "api_app_id",
        "is_enterprise_install",
        "response_url",
        "trigger_id",
    ]
    form = dict(fields)
    assert form["text"] == "Jane &lt;jane@acme.io&gt; &amp; co"
    assert (form["command"], form["user_id"], form["channel_id"]) == (
        "/lead",
        "U0ALICE",
        "C0EVENTS01",
    )
    assert form["team_id"] == "T0LEADBOT" and form["is_enterprise_install"] == "false"
    assert form["trigger_id"] == "123.456.abc"

    sim.slash_command("a < b", "U0ALICE", escape=False)
    assert dict(parse_qsl(receiver.last()[2].decode()))["text"] == "a < b"


def test_stale_timestamp_and_forged_secret_fail_verification(receiver: Receiver) -> None:
    sim = SlackSim(receiver.url, SECRET)
    stale = int(time.time()) - 600
    sim.slash_command("x", "U0ALICE", timestamp=stale)
    _, headers, body = receiver.last()
    assert headers["X-Slack-Request-Timestamp"] == str(stale)
    # Correctly signed for that timestamp, but too old to be accepted.
    expected = SignatureVerifier(SECRET).generate_signature(timestamp=str(stale), body=body)
    assert headers["X-Slack-Signature"] == expected
    assert not verified(headers, body)

    sim.slash_command("x", "U0ALICE", secret="forged-secret")
    _, headers, body = receiver.last()
    assert not verified(headers, body) and verified(headers, body, "forged-secret")


def test_block_action_from_an_emulated_message(receiver: Receiver, emu: SlackEmulator) -> None:
    web = WebClient(token="xoxb-test", base_url=emu.url, retry_handlers=[])
    posted = web.chat_postMessage(channel="#leads", text="lead", blocks=CLAIM_BLOCKS)
    sim = SlackSim(receiver.url, SECRET, response_url_for=emu.response_url)
    [message] = emu.messages("#leads")
    sim.block_action("U0BOB", "lead_claim", "42", message=message, trigger_id="9.9.f")

    _, headers, body = receiver.last()
    assert verified(headers, body)
    payload = receiver.last_payload()
    assert payload["type"] == "block_actions"
    assert payload["user"] == {
        "id": "U0BOB",
        "username": "u0bob",
        "name": "u0bob",
        "team_id": "T0LEADBOT",
    }
    assert payload["container"] == {
        "type": "message",
        "message_ts": posted["ts"],
        "channel_id": posted["channel"],
        "is_ephemeral": False,
    }
    assert payload["channel"]["id"] == posted["channel"]
    assert payload["team"] == {"id": "T0LEADBOT", "domain": "leadbot-emulator"}
    assert payload["trigger_id"] == "9.9.f" and payload["api_app_id"] and payload["token"]
    assert payload["message"]["ts"] == posted["ts"] and "channel" not in payload["message"]
    assert payload["message"]["blocks"] == CLAIM_BLOCKS
    assert payload["response_url"].startswith(emu.response_url(""))
    [action] = payload["actions"]
    assert action["action_id"] == "lead_claim" and action["value"] == "42"
    assert action["type"] == "button" and action["block_id"] == "lead_actions"
    assert float(action["action_ts"]) > 0


def test_select_action_and_view_submission(receiver: Receiver) -> None:
    sim = SlackSim(receiver.url, SECRET)
    sim.select("U0BOB", "lead_priority", ("High", "high"), channel_id="C0LEADS01")
    [action] = receiver.last_payload()["actions"]
    assert action["type"] == "static_select"
    assert action["selected_option"]["value"] == "high"
    assert action["selected_option"]["text"]["text"] == "High"

    view = {"id": "V0MODAL01", "type": "modal", "callback_id": "lead_new", "blocks": []}
    sim.view_submission(
        "U0ALICE",
        view,
        {
            "name": ("name_input", "plain_text_input", "Jane"),
            "priority": ("priority_input", "static_select", "high"),
            "notes": {"notes_input": {"type": "plain_text_input", "value": None}},
        },
        private_metadata='{"channel": "C0LEADS01"}',
    )
    _, headers, body = receiver.last()
    assert verified(headers, body)
    payload = receiver.last_payload()
    assert payload["type"] == "view_submission"
    assert payload["user"]["id"] == "U0ALICE" and payload["team"]["id"] == "T0LEADBOT"
    sent = payload["view"]
    assert (sent["id"], sent["callback_id"]) == ("V0MODAL01", "lead_new")
    assert sent["private_metadata"] == '{"channel": "C0LEADS01"}'
    values = sent["state"]["values"]
    assert values["name"]["name_input"] == {"type": "plain_text_input", "value": "Jane"}
    assert values["priority"]["priority_input"]["selected_option"]["value"] == "high"
    assert values["notes"]["notes_input"]["value"] is None
    assert state_values({"x": ("x_input", "users_select", "U1")}) == {
        "x": {"x_input": {"type": "users_select", "selected_user": "U1"}}
    }


def test_event_callback_and_retry_headers(receiver: Receiver) -> None:
    sim = SlackSim(receiver.url, SECRET)
    event = {"type": "app_mention", "user": "U0ALICE", "text": "<@U0LEADBOT> hi", "channel": "C1"}
    sim.event(event, event_id="Ev0FIRST01")
    sim.event(event, retry_num=1, event_id="Ev0FIRST01")
    first, retry = receiver.requests[-2:]
    assert first[1]["Content-Type"] == "application/json" and verified(first[1], first[2])
    assert "X-Slack-Retry-Num" not in first[1]
    assert retry[1]["X-Slack-Retry-Num"] == "1"
    assert retry[1]["X-Slack-Retry-Reason"] == "http_timeout"
    body = json.loads(retry[2])
    assert body["type"] == "event_callback" and body["event_id"] == "Ev0FIRST01"
    assert body["event"]["text"] == "<@U0LEADBOT> hi" and body["event"]["ts"]
    assert body["authorizations"][0]["user_id"] == "U0LEADBOT"


def test_errors_are_returned_not_raised_and_raw_bodies(receiver: Receiver) -> None:
    sim = SlackSim(receiver.url, SECRET)
    receiver.status, receiver.reply, receiver.content_type = 401, b"invalid signature", "text/plain"
    resp = sim.raw(b"\xffnot utf-8", "application/x-www-form-urlencoded")
    assert resp.status == 401 and not resp.ok and resp.body == "invalid signature"
    with pytest.raises(ValueError, match="not JSON"):
        resp.json()
    _, headers, body = receiver.last()
    assert body == b"\xffnot utf-8" and headers["X-Slack-Signature"].startswith("v0=")

    receiver.status, receiver.reply = 200, b""
    unsigned = sim.raw(b"payload=%7B%7D", "application/x-www-form-urlencoded", sign=False)
    assert unsigned.status == 200 and unsigned.json() is None
    assert "X-Slack-Signature" not in receiver.last()[1]


def test_hold_keeps_matching_calls_in_flight_until_released(
    emu: SlackEmulator, client: WebClient
) -> None:
    gate = emu.hold("chat.postMessage", when=lambda args: args.get("channel") == "C0HELD0001")
    answers: list[str] = []

    def post() -> None:
        answers.append(client.chat_postMessage(channel="C0HELD0001", text="held")["ts"])

    poster = threading.Thread(target=post)
    poster.start()
    assert gate.arrived.wait(5)
    # Other calls, and other channels, are answered meanwhile.
    assert client.chat_postMessage(channel="C0OTHER001", text="free")["ok"]
    assert client.auth_test()["ok"]
    poster.join(0.3)
    assert poster.is_alive() and answers == []
    assert [m.text for m in emu.messages()] == ["free"]
    gate.release()
    poster.join(5)
    assert len(answers) == 1
    assert sorted(m.text for m in emu.messages()) == ["free", "held"]


def test_answer_gives_slacks_rarer_answers_as_asked(client: WebClient, emu: SlackEmulator) -> None:
    emu.answer("views.open", {"ok": False, "error": "expired_trigger_id"})
    with pytest.raises(SlackApiError) as expired:
        client.views_open(trigger_id="t-1", view={"type": "modal", "title": "x", "blocks": []})
    assert expired.value.response["error"] == "expired_trigger_id"
    assert emu.modals == {}  # not applied

    # Applied: the post lands; the answer loses its ts and gains a warning.
    emu.answer("chat.postMessage", {"ts": None, "warning": "missing_charset"}, applied=True)
    posted = client.chat_postMessage(channel="C0LEADS01", text="no ts").data
    assert isinstance(posted, dict)
    assert "ts" not in posted and posted["ok"] and posted["warning"] == "missing_charset"
    assert [m.text for m in emu.messages("C0LEADS01")] == ["no ts"]
    assert client.chat_postMessage(channel="C0LEADS01", text="as usual")["ts"]
    assert [c.fault for c in emu.calls_to("chat.postMessage")] == ["answer", None]
    assert [c.error for c in emu.calls_to("views.open")] == ["expired_trigger_id"]


def test_faults_and_answers_can_pick_their_calls(client: WebClient, emu: SlackEmulator) -> None:
    emu.fail(
        "chat.postMessage", error="user_not_found", times=2, when=lambda a: a["channel"] == "U0GONE"
    )
    emu.answer("chat.postMessage", {"ts": None}, applied=True, when=lambda a: a["text"] == "odd")
    for _ in range(2):
        with pytest.raises(SlackApiError):
            client.chat_postMessage(channel="U0GONE", text="hello")
        assert client.chat_postMessage(channel="U0HERE", text="hello")["ts"]
    assert "ts" not in client.chat_postMessage(channel="U0HERE", text="odd").data
    assert client.chat_postMessage(channel="U0GONE", text="hello")["ok"]  # used up
    errors = [(c.args["channel"], c.error) for c in emu.calls_to("chat.postMessage")]
    assert errors[:4] == [("U0GONE", "user_not_found"), ("U0HERE", None)] * 2


def test_response_urls_can_be_refused_like_expired_ones(emu: SlackEmulator) -> None:
    emu.fail_responses(404, "expired_url", name="cmd-1")
    late = WebhookClient(emu.response_url("cmd-1")).send(text="too late")
    other = WebhookClient(emu.response_url("cmd-2")).send(text="in time")
    again = WebhookClient(emu.response_url("cmd-1")).send(text="in time")
    assert (late.status_code, late.body) == (404, "expired_url")
    assert (other.status_code, again.status_code) == (200, 200)
    assert [(r.name, r.status) for r in emu.responses] == [
        ("cmd-1", 404),
        ("cmd-2", 200),
        ("cmd-1", 200),
    ]


# --------------------------------------------------------------------------- Slack's limits


def _section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def _button(text: str = "Go", value: str = "1", action_id: str = "go") -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text},
        "value": value,
    }


def _select(options: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "static_select",
        "action_id": "pick",
        "placeholder": {"type": "plain_text", "text": "Pick"},
        "options": options,
    }


def _option(text: str = "One", value: str = "1") -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": text}, "value": value}


def _actions(*elements: dict[str, Any], block_id: str = "acts") -> dict[str, Any]:
    return {"type": "actions", "block_id": block_id, "elements": list(elements)}


def _fields(*texts: str) -> dict[str, Any]:
    return {"type": "section", "fields": [{"type": "mrkdwn", "text": t} for t in texts]}


# (what, blocks at the limit, blocks one past it, the pointer Slack names)
MESSAGE_LIMITS = [
    ("blocks", [_section("x")] * 50, [_section("x")] * 51, "/blocks"),
    ("section text", [_section("x" * 3000)], [_section("x" * 3001)], "/blocks/0/text/text"),
    (
        "header text",
        [{"type": "header", "text": {"type": "plain_text", "text": "h" * 150}}],
        [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
        "/blocks/0/text/text",
    ),
    (
        "button text",
        [_actions(_button("b" * 75))],
        [_actions(_button("b" * 76))],
        "/blocks/0/elements/0/text/text",
    ),
    (
        "button value",
        [_actions(_button(value="v" * 2000))],
        [_actions(_button(value="v" * 2001))],
        "/blocks/0/elements/0/value",
    ),
    (
        "action_id",
        [_actions(_button(action_id="a" * 255))],
        [_actions(_button(action_id="a" * 256))],
        "/blocks/0/elements/0/action_id",
    ),
    (
        "block_id",
        [_section("x", block_id="b" * 255)],
        [_section("x", block_id="b" * 256)],
        "/blocks/0/block_id",
    ),
    (
        "duplicate block_id",
        [_section("x", block_id="a"), _section("x", block_id="b")],
        [_section("x", block_id="a"), _section("x", block_id="a")],
        "/blocks/1/block_id",
    ),
    (
        "duplicate action_id in a block",
        [_actions(_button(action_id="a"), _button(action_id="b"))],
        [_actions(_button(action_id="a"), _button(action_id="a"))],
        "/blocks/0/elements/1/action_id",
    ),
    (
        "option text",
        [_actions(_select([_option("o" * 75)]))],
        [_actions(_select([_option("o" * 76)]))],
        "/blocks/0/elements/0/options/0/text/text",
    ),
    (
        "option value",
        [_actions(_select([_option(value="v" * 150)]))],
        [_actions(_select([_option(value="v" * 151)]))],
        "/blocks/0/elements/0/options/0/value",
    ),
    (
        "options",
        [_actions(_select([_option(value=str(i)) for i in range(100)]))],
        [_actions(_select([_option(value=str(i)) for i in range(101)]))],
        "/blocks/0/elements/0/options",
    ),
    (
        "placeholder",
        [
            _section(
                "x",
                accessory={
                    **_select([_option()]),
                    "placeholder": {"type": "plain_text", "text": "p" * 150},
                },
            )
        ],
        [
            _section(
                "x",
                accessory={
                    **_select([_option()]),
                    "placeholder": {"type": "plain_text", "text": "p" * 151},
                },
            )
        ],
        "/blocks/0/accessory/placeholder/text",
    ),
    (
        "actions elements",
        [_actions(*[_button(action_id=f"a{i}") for i in range(25)])],
        [_actions(*[_button(action_id=f"a{i}") for i in range(26)])],
        "/blocks/0/elements",
    ),
    ("fields", [_fields(*["f"] * 10)], [_fields(*["f"] * 11)], "/blocks/0/fields"),
    ("field text", [_fields("f" * 2000)], [_fields("f" * 2001)], "/blocks/0/fields/0/text"),
    (
        "context elements",
        [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 10}],
        [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
        "/blocks/0/elements",
    ),
]


@pytest.mark.parametrize(
    ("what", "fits", "over", "pointer"), MESSAGE_LIMITS, ids=[m[0] for m in MESSAGE_LIMITS]
)
@pytest.mark.parametrize("method", ["chat_postMessage", "chat_postEphemeral", "chat_update"])
def test_messages_over_a_block_kit_limit_are_refused_as_slack_does(
    client: WebClient,
    emu: SlackEmulator,
    method: str,
    what: str,
    fits: list,
    over: list,
    pointer: str,
) -> None:
    posted = client.chat_postMessage(channel="#leads", text="first")
    args: dict[str, Any] = {"channel": posted["channel"], "text": "fallback"}
    if method == "chat_update":
        args["ts"] = posted["ts"]
    if method == "chat_postEphemeral":
        args["user"] = "U0REP00001"
    assert getattr(client, method)(**args, blocks=fits)["ok"]
    with pytest.raises(SlackApiError) as refused:
        getattr(client, method)(**args, blocks=over)
    answer = refused.value.response.data
    assert answer["error"] == "invalid_blocks"
    assert any(e.endswith(f"[json-pointer:{pointer}]") for e in answer["errors"]), answer
    assert answer["response_metadata"]["messages"] == [f"[ERROR] {e}" for e in answer["errors"]]
    [refusal] = emu.refusals
    assert refusal.method == method.replace("_", ".") and refusal.error == "invalid_blocks"
    if method == "chat_update":  # the message is as it was
        assert emu.message(posted["channel"], posted["ts"]).blocks == fits


def test_slack_words_its_reasons_with_json_pointers(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="#leads", text="t", blocks=[_section("x" * 3001)])
    assert refused.value.response["errors"] == [
        "must be less than 3001 characters [json-pointer:/blocks/0/text/text]"
    ]
    with pytest.raises(SlackApiError) as too_many:
        client.chat_postMessage(channel="#leads", text="t", blocks=[_section("x")] * 51)
    assert too_many.value.response["errors"] == [
        "no more than 50 items allowed [json-pointer:/blocks]"
    ]


def test_what_slack_sdk_validates_is_refused_too(client: WebClient, emu: SlackEmulator) -> None:
    """Past the table, each block goes through slack_sdk's own validators: a button's style
    is primary or danger, a date picker's date YYYY-MM-DD."""
    loud = {**_button(), "style": "loud"}
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="#leads", text="t", blocks=[_actions(loud)])
    assert refused.value.response["error"] == "invalid_blocks"
    assert "[json-pointer:/blocks/0]" in refused.value.response["errors"][0]
    date = {"type": "datepicker", "action_id": "d", "initial_date": "26/11/2026"}
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="#leads", text="t", blocks=[_actions(date)])
    assert len(emu.refusals) == 2


def test_blocks_that_are_no_json_array_are_invalid_blocks_format(emu: SlackEmulator) -> None:
    body = "channel=%23leads&text=t&blocks=%7Bnot+json"
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    conn.request(
        "POST",
        "/api/chat.postMessage",
        body,
        {"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Bearer xoxb-t"},
    )
    assert json.loads(conn.getresponse().read())["error"] == "invalid_blocks_format"
    conn.close()
    assert [r.error for r in emu.refusals] == ["invalid_blocks_format"]


def test_text_past_40000_characters_is_cut_or_refused_as_slack_does(
    client: WebClient, emu: SlackEmulator
) -> None:
    long = "x" * 40_001
    posted = client.chat_postMessage(channel="#leads", text=long)
    assert posted["warning"] == "message_truncated"
    assert len(emu.message(posted["channel"], posted["ts"]).text) == 40_000
    with pytest.raises(SlackApiError) as refused:
        client.chat_update(channel=posted["channel"], ts=posted["ts"], text=long)
    assert refused.value.response["error"] == "msg_too_long"
    assert client.chat_postMessage(channel="#leads", text="x" * 40_000).get("warning") is None
    assert [r.error for r in emu.refusals] == ["message_truncated", "msg_too_long"]


def _modal(**changes: Any) -> dict[str, Any]:
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": "cb",
        "title": {"type": "plain_text", "text": "New lead"},
        "submit": {"type": "plain_text", "text": "Submit"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": "",
        "blocks": [
            {
                "type": "input",
                "block_id": "name",
                "label": {"type": "plain_text", "text": "Name"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "name_input",
                    "max_length": 200,
                },
            }
        ],
    }
    view.update(changes)
    return view


def _input(label: str = "Name", max_length: int = 200, block_id: str = "name") -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": block_id,
        "label": {"type": "plain_text", "text": label},
        "element": {"type": "plain_text_input", "action_id": "in", "max_length": max_length},
    }


def _title(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


VIEW_LIMITS = [
    (
        "blocks",
        {"blocks": [_input(block_id=f"b{i}") for i in range(100)]},
        {"blocks": [_input(block_id=f"b{i}") for i in range(101)]},
        "/view/blocks",
    ),
    ("title", {"title": _title("t" * 24)}, {"title": _title("t" * 25)}, "/view/title/text"),
    ("submit", {"submit": _title("s" * 24)}, {"submit": _title("s" * 25)}, "/view/submit/text"),
    ("close", {"close": _title("c" * 24)}, {"close": _title("c" * 25)}, "/view/close/text"),
    (
        "private_metadata",
        {"private_metadata": "m" * 3000},
        {"private_metadata": "m" * 3001},
        "/view/private_metadata",
    ),
    ("callback_id", {"callback_id": "c" * 255}, {"callback_id": "c" * 256}, "/view/callback_id"),
    (
        "input label",
        {"blocks": [_input("l" * 2000)]},
        {"blocks": [_input("l" * 2001)]},
        "/view/blocks/0/label/text",
    ),
    (
        "max_length",
        {"blocks": [_input(max_length=3000)]},
        {"blocks": [_input(max_length=3001)]},
        "/view/blocks/0/element/max_length",
    ),
    (
        "duplicate block_id",
        {"blocks": [_input(), _input(block_id="b")]},
        {"blocks": [_input(), _input()]},
        "/view/blocks/1/block_id",
    ),
]


@pytest.mark.parametrize(
    ("what", "fits", "over", "pointer"), VIEW_LIMITS, ids=[v[0] for v in VIEW_LIMITS]
)
@pytest.mark.parametrize("method", ["views_open", "views_push", "views_update"])
def test_modals_over_a_limit_are_refused_as_slack_does(
    client: WebClient,
    emu: SlackEmulator,
    method: str,
    what: str,
    fits: dict,
    over: dict,
    pointer: str,
) -> None:
    opened = client.views_open(trigger_id="t-0", view=_modal())["view"]
    where: dict[str, Any] = (
        {"view_id": opened["id"]} if method == "views_update" else {"trigger_id": "t-1"}
    )
    with pytest.raises(SlackApiError) as refused:
        getattr(client, method)(**where, view=_modal(**over))
    answer = refused.value.response.data
    assert answer["error"] == "invalid_arguments" and "errors" not in answer
    messages = answer["response_metadata"]["messages"]
    assert any(
        m.startswith("[ERROR] ") and m.endswith(f"[json-pointer:{pointer}]") for m in messages
    )
    assert [r.method for r in emu.refusals] == [method.replace("_", ".")]
    where = {"view_id": opened["id"]} if method == "views_update" else {"trigger_id": "t-2"}
    assert getattr(client, method)(**where, view=_modal(**fits))["ok"]


def test_a_home_tab_holds_100_blocks_a_message_50(client: WebClient, emu: SlackEmulator) -> None:
    blocks = [_section(f"line {i}") for i in range(100)]
    assert client.views_publish(user_id="U0REP00001", view={"type": "home", "blocks": blocks})["ok"]
    with pytest.raises(SlackApiError) as refused:
        client.views_publish(
            user_id="U0REP00001", view={"type": "home", "blocks": [*blocks, _section("101")]}
        )
    assert refused.value.response["error"] == "invalid_arguments"
    assert len(emu.home("U0REP00001")["blocks"]) == 100  # the published one stays


def test_response_url_posts_over_a_limit_get_400_invalid_blocks(emu: SlackEmulator) -> None:
    hook = WebhookClient(emu.response_url("cmd"))
    assert hook.send(text="t", blocks=[_section("x")] * 50).status_code == 200
    refused = hook.send(text="t", blocks=[_section("x")] * 51)
    assert (refused.status_code, refused.body) == (400, "invalid_blocks")
    [refusal] = emu.refusals
    assert refusal.method == "response_url"
    assert refusal.messages == ["no more than 50 items allowed [json-pointer:/blocks]"]


def test_acks_over_a_limit_are_put_on_record(receiver: Receiver, emu: SlackEmulator) -> None:
    sim = SlackSim(receiver.url, SECRET, on_refused=emu.note_refusal)
    receiver.reply = json.dumps({"text": "t", "blocks": [_section("x" * 3001)]}).encode()
    sim.slash_command("mine", user_id="U0REP00001")
    receiver.reply = json.dumps(
        {"response_action": "update", "view": _modal(title=_title("t" * 25))}
    ).encode()
    sim.slash_command("mine", user_id="U0REP00001")
    receiver.reply = json.dumps({"text": "t", "blocks": [_section("x")]}).encode()
    sim.slash_command("mine", user_id="U0REP00001")
    assert [(r.method, r.error) for r in emu.refusals] == [
        ("ack", "invalid_blocks"),
        ("ack", "invalid_arguments"),
    ]


def test_faults_asked_for_are_not_refusals(client: WebClient, emu: SlackEmulator) -> None:
    emu.fail("chat.postMessage", error="invalid_blocks")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="#leads", text="t")
    assert emu.refusals == []


def test_the_limits_agree_with_slack_sdks_where_it_has_them() -> None:
    from slack_sdk.models.blocks import ButtonElement, HeaderBlock, InputBlock, SectionBlock
    from slack_sdk.models.blocks.basic_components import Option
    from slack_sdk.models.views import View

    from bot.slack_limits import LIMITS

    def limit(kind: str, path: str) -> int:
        return next(n for p, _, n in LIMITS[kind] if p == path)

    assert limit("section", "text.text") == SectionBlock.text_max_length
    assert limit("section", "fields") == SectionBlock.fields_max_length
    assert limit("header", "text.text") == HeaderBlock.text_max_length
    assert limit("button", "text.text") == ButtonElement.text_max_length
    assert limit("button", "value") == ButtonElement.value_max_length
    assert limit("option", "text.text") == Option.label_max_length
    assert limit("option", "value") == Option.value_max_length
    assert limit("input", "label.text") == InputBlock.label_max_length
    assert limit("modal", "title.text") == View.title_max_length
    assert limit("modal", "private_metadata") == View.private_metadata_max_length
    assert limit("modal", "callback_id") == View.callback_id_max_length
    assert limit("modal", "blocks") == View.blocks_max_length
