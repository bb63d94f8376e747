"""A real browser on a phone-sized screen walks the whole life of a subscription.

Headless Chromium (Debian's ``chromium``, installed by ``make browser-deps``) driven by
Playwright through ``executable_path`` -- Playwright's own browser download is never
used.  The walk: start page -> preview -> subscribe -> the confirmation mail (read
from the Maildir) -> confirm (the GET page changes nothing, its button does) ->
manage: a bad filter shows the caret, a good one is saved -> unsubscribe (likewise).  And a
digest's "More like this" link -> its button -> the manage page's list -> Remove.  Each page is
saved as ``tests/artifacts/<step>.png`` (git-ignored) for a human to look at.
"""

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from digest.store import Store
from tests.test_web import MakeSite, Site, later, link_path, make_site, text_of  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
PHONE = {"width": 390, "height": 844}
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.slow


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.skip(f"no {CHROMIUM}: run `make browser-deps` (apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed (.[test])"
    )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def shot(page: Any, step: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{step}.png"), full_page=True)


def status(site: Site, email: str) -> str | None:
    found = site.subscriber(email)
    return found.status if found else None


def test_subscribe_confirm_manage_and_unsubscribe_in_a_browser(
    browser: Any,
    make_site: MakeSite,  # noqa: F811
) -> None:
    site = make_site()
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        page.goto(site.url + "/")
        assert page.title().startswith("Trending papers, filtered for you")
        shot(page, "01-home")

        page.fill("#email", "ada@example.org")
        page.fill("#filter", "diffusion -video")
        page.click("button[value=preview]")
        page.wait_for_selector("#preview")
        assert page.locator("#preview ol li").count() == 10
        shot(page, "02-preview")

        page.click("button[value=subscribe]")
        page.wait_for_selector("text=Check your inbox")
        assert status(site, "ada@example.org") == "pending"
        shot(page, "03-check-your-inbox")

        page.goto(site.confirm_link())
        page.wait_for_selector("h1:has-text('Confirm your subscription')")
        assert status(site, "ada@example.org") == "pending"  # the GET changed nothing
        shot(page, "03b-confirm")
        page.click("button:has-text('Confirm my subscription')")
        page.wait_for_selector("text=You are subscribed")
        assert status(site, "ada@example.org") == "active"
        shot(page, "04-confirmed")

        page.click("text=Change your filter, frequency or format")
        page.wait_for_selector("h1:has-text('Your subscription')")
        shot(page, "05-manage")

        page.fill("#filter", "agents AND")
        page.click("button[value=save]")
        page.wait_for_selector("pre.caret")
        assert "AND needs a term on each side" in page.inner_text("#filter-error")
        shot(page, "06-manage-bad-filter")

        page.fill("#filter", "agents OR robot*")
        page.select_option("#frequency", "weekly")
        page.click("button[value=save]")
        page.wait_for_selector("text=Your settings are saved.")
        person = site.subscriber("ada@example.org")
        assert person is not None
        assert (person.filter, person.frequency) == ("agents OR robot*", "weekly")
        shot(page, "07-manage-saved")

        page.click("a:has-text('Unsubscribe')")
        page.wait_for_selector("h1:has-text('Unsubscribe?')")
        assert status(site, "ada@example.org") == "active"  # the GET changed nothing
        shot(page, "08-unsubscribe")

        page.click("button:has-text('Unsubscribe')")
        page.wait_for_selector("text=You are unsubscribed")
        assert status(site, "ada@example.org") == "unsubscribed"
        shot(page, "09-unsubscribed")
    finally:
        context.close()


def test_the_start_page_in_dark_mode_on_a_desktop(
    browser: Any,
    make_site: MakeSite,  # noqa: F811
) -> None:
    site = make_site()
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="dark")
    page = context.new_page()
    try:
        page.goto(site.url + "/")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert re.fullmatch(r"rgb\(17, 24, 39\)", background)  # the email's dark #111827
        shot(page, "10-home-dark-desktop")
    finally:
        context.close()


def test_more_like_this_from_a_digest_then_taken_back_on_the_manage_page_in_a_browser(
    browser: Any,
    make_site: MakeSite,  # noqa: F811
) -> None:
    site = make_site(digest={"max_papers": 3})
    person = site.active("ada@example.org", "diffusion OR model")
    with ThreadPoolExecutor(1) as other:  # outside Playwright's event loop: send runs its own
        [mail] = other.submit(site.send_digests).result()
    found = re.search(r"More like this: (http://\S+)", text_of(mail))
    assert found is not None
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        page.goto(found.group(1))
        page.wait_for_selector("h1:has-text('More like this?')")
        shot(page, "11-feedback")
        page.click("button:has-text('More like this')")
        page.wait_for_selector("text=Recorded: more papers like")
        shot(page, "12-feedback-recorded")
        page.goto(site.url + link_path(person, "manage"))
        page.wait_for_selector("h2:has-text('Papers you marked')")
        assert page.locator("ul.marked li").count() == 1
        shot(page, "13-manage-marked")
        page.click("ul.marked button:has-text('Remove')")
        page.wait_for_selector("text=That paper is off your list.")
        with closing(Store(site.config.storage.database)) as store:
            assert store.feedback(person.id) == []
    finally:
        context.close()
