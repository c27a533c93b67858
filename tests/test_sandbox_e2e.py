"""`leadbot sandbox` end to end in a real browser (Debian's Chromium driven by Playwright).

The sandbox runs in-process on a free port with a throwaway database; the browser clicks through
the product as people would: a marketer submits a lead, a rep claims it, DMs arrive, the /lead
modal rejects then accepts a lead, the clock brings a reminder into the card's thread, and the
next morning the manager's digest.
Screenshots of each step land in .artifacts/sandbox/.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from bot.sandbox import RunningSandbox, start_sandbox
from bot.sandbox.workspace import MANAGER, MARKETER, REP_A, REP_B

# Needs Debian's chromium: excluded from the default run, run by .ci/run as `pytest -m browser`.
pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[1] / ".artifacts" / "sandbox"
LEAD = "Jane Doe, jane@acme.example, Acme Corp, hot, #SaaStr2026, wants an API demo"

expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    running = start_sandbox(tmp_path_factory.mktemp("sandbox") / "sandbox.db", timezone="UTC")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the sandbox browser test drives Debian's Chromium. "
            "Install it with `apt-get install chromium` (CI does).",
            pytrace=False,
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, sandbox: RunningSandbox) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(sandbox.url)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def open_conv(page: Page, label: str) -> None:
    page.locator("#sidebar .side-item").filter(
        has=page.locator(".side-label", has_text=re.compile(f"^{re.escape(label)}$"))
    ).click()
    expect(page.locator("#conv-header")).to_contain_text(label)


def be(page: Page, user: str) -> None:
    page.locator("#person").select_option(user)


def type_in_composer(page: Page, text: str) -> None:
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")


def card(page: Page, name: str) -> Locator:
    return page.locator("#messages .msg").filter(has=page.locator(".bk-header", has_text=name))


def test_marketer_to_rep_in_the_browser(page: Page) -> None:
    # The marketer submits a lead from #events; the receipt is ephemeral.
    expect(page.locator("#conv-header")).to_contain_text("events")
    type_in_composer(page, f"/lead {LEAD}")
    receipt = page.locator("#messages .msg.ephemeral").filter(has_text="Lead #1")
    expect(receipt).to_contain_text("Only visible to you")
    expect(receipt).to_contain_text("Jane Doe")
    shot(page, "01-marketer-submits")

    # The card is in #leads; a rep claims it.
    open_conv(page, "leads")
    jane = card(page, "Jane Doe")
    expect(jane).to_contain_text("Acme Corp")
    expect(jane.get_by_role("button", name="Claim")).to_be_visible()
    be(page, REP_A)
    shot(page, "02-card-before-claim")
    jane.get_by_role("button", name="Claim").click()
    expect(jane).to_contain_text("Claimed by @Sam Rivera")
    expect(jane.get_by_role("button", name="Claim")).to_have_count(0)
    expect(jane.get_by_role("button", name="Release")).to_be_visible()
    shot(page, "03-card-claimed")

    # Release asks to confirm first (Block Kit confirm dialog); "Keep it" changes nothing.
    jane.get_by_role("button", name="Release").click()
    dialog = page.locator("#confirm-layer")
    expect(dialog).to_contain_text("Release this lead?")
    shot(page, "03b-release-confirm")
    dialog.get_by_role("button", name="Keep it").click()
    expect(dialog).to_be_hidden()
    expect(jane).to_contain_text("Claimed by @Sam Rivera")

    # The claimer's DM arrives (unread badge) with the contact details.
    dm = page.locator("#sidebar .side-item[data-open-conv='dm']")
    expect(dm.locator(".side-badge")).to_have_text("1")
    dm.click()
    messages = page.locator("#messages")
    expect(messages).to_contain_text("You claimed lead #1")
    expect(messages).to_contain_text("jane@acme.example")
    shot(page, "04-rep-dm")

    # The marketer hears who claimed it.
    be(page, MARKETER)
    expect(messages).to_contain_text("@Sam Rivera claimed your lead #1")
    shot(page, "05-marketer-dm")

    # /lead alone opens the modal; the bot rejects a lead without email or phone on the field.
    open_conv(page, "events")
    type_in_composer(page, "/lead")
    modal = page.locator("#modal-layer .modal")
    expect(modal).to_contain_text("New lead")
    modal.locator("[data-block-id='name'] input").fill("Bob Smith")
    modal.locator("[data-block-id='company'] input").fill("Globex")
    modal.get_by_role("button", name="Submit").click()
    email_error = modal.locator("[data-block-id='email'] .bk-error")
    expect(email_error).to_contain_text("email or phone")
    expect(modal.locator("[data-block-id='name'] input")).to_have_value("Bob Smith")
    shot(page, "06-modal-error")

    modal.locator("[data-block-id='email'] input").fill("bob@globex.example")
    modal.get_by_role("button", name="Submit").click()
    expect(page.locator("#modal-layer")).to_be_hidden()
    expect(page.locator("#messages .msg.ephemeral").filter(has_text="Lead #2")).to_contain_text(
        "Bob Smith"
    )
    shot(page, "07-modal-submitted")

    # An hour later nobody has claimed Bob: a reminder lands in the card's thread.
    page.get_by_role("button", name="+1 hour").click()
    # The toast lists each job's own one-line summary (free text owned by the jobs).
    expect(page.locator("#toasts")).to_contain_text("Clock moved. reminders:")
    open_conv(page, "leads")
    bob = card(page, "Bob Smith")
    bob.locator(".thread-link").click()
    thread = page.locator("#thread")
    expect(thread).to_contain_text("Reminder 1")
    expect(thread).to_contain_text("Bob Smith")
    reply = page.get_by_role("textbox", name="Reply")
    reply.fill("On it after lunch")
    reply.press("Enter")
    expect(thread).to_contain_text("On it after lunch")
    expect(bob.locator(".thread-link")).to_contain_text("2 replies")
    shot(page, "08-reminder-in-thread")

    # The next morning the manager finds the digest in their DM with leadbot.
    page.get_by_role("button", name="Next morning").click()
    expect(page.locator("#clock-label")).to_contain_text("09:00")
    expect(page.locator("#toasts")).to_contain_text("digest:")
    be(page, MANAGER)
    page.locator("#sidebar .side-item[data-open-conv='dm']").click()
    digest = page.locator("#messages .msg").filter(has_text="Lead digest").last
    expect(digest).to_contain_text("Unclaimed backlog")
    expect(digest).to_contain_text("Bob Smith")
    shot(page, "09-manager-digest")


def test_home_tab_and_unknown_commands(sandbox: RunningSandbox) -> None:
    sb = sandbox.sandbox
    assert "has not published a Home tab" in sb.state(REP_B, "home")["main_html"]
    # What the bot would publish with views.publish shows on the Home tab, wired for clicks.
    menu = {
        "type": "overflow",
        "action_id": "home_menu",
        "options": [{"text": {"type": "plain_text", "text": "Refresh"}, "value": "refresh"}],
    }
    home = {
        "type": "home",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*My leads*"}, "accessory": menu}
        ],
    }
    sb.ui.views_publish(user_id=REP_B, view=home)
    shown = sb.state(REP_B, "home")["main_html"]
    home_id = sb.slack.home(REP_B)["id"]
    assert "<b>My leads</b>" in shown and f'data-view-id="{home_id}"' in shown
    # The bot has no listener for it, so it answers 404 and the page says so.
    click = {"source": "view", "view_id": home_id, "block_id": "sbx-b0", "action_id": "home_menu"}
    used = sb.act(REP_B, {**click, "value": "refresh"})
    assert used == {"ok": False, "error": "leadbot answered HTTP 404 to 'home_menu'"}
    # A command the bot does not have gets Slack's own answer, only for the one who typed it.
    assert sb.send(REP_B, "dm", "/weather now") == {"ok": True}
    assert "/weather is not a valid command" in sb.state(REP_B, "dm")["main_html"]
    assert "/weather" not in sb.state(MARKETER, "dm")["main_html"]


def _request(
    sandbox: RunningSandbox, method: str, path: str, body: str = "", **headers: str
) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", sandbox.web.port, timeout=5)
    try:
        conn.request(method, path, body=body.encode(), headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_page_server_refuses_foreign_hosts_and_non_json_posts(sandbox: RunningSandbox) -> None:
    port = sandbox.web.port
    ok, page_html = _request(sandbox, "GET", "/", Host=f"localhost:{port}")
    assert ok == 200 and "leadbot sandbox" in page_html
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 must get nothing.
    assert _request(sandbox, "GET", "/", Host="evil.example")[0] == 403
    assert _request(sandbox, "GET", f"/api/state?user={MARKETER}", Host="evil.example")[0] == 403
    body = json.dumps({"user": MARKETER, "step": "15m"})
    # A cross-site form post (no JSON) and a cross-origin JSON post are both refused.
    form = _request(
        sandbox,
        "POST",
        "/api/clock",
        "step=15m",
        Host=f"127.0.0.1:{port}",
        **{"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form[0] == 415
    foreign = _request(
        sandbox,
        "POST",
        "/api/clock",
        body,
        Host=f"127.0.0.1:{port}",
        Origin="http://evil.example",
        **{"Content-Type": "application/json"},
    )
    assert foreign[0] == 403
    assert _request(sandbox, "GET", "/static/../workspace.py", Host=f"127.0.0.1:{port}")[0] == 404
