"""The web page in a real browser: Playwright for Python driving Debian's chromium against real
server processes (`benchmarks.servers.Server`) on the genre-taste bundle.

One browser for the module, a fresh context (no storage, no cache) per test. Every request the
page makes to another host is refused and fails the test, as does any script error or CSP
violation. Screenshots of both ways in go to a temporary folder, or to `SCREENSHOTS_DIR`
(`SCREENSHOTS_DIR=docs/screenshots` refreshes the README's).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from benchmarks.servers import Server
from tests.support import REPO
from tests.support.data import TASTE_GENRES

# Servers and a browser start here: limits of their own, above the suite's default.
pytestmark = pytest.mark.timeout(300)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    # The network is closed: every host but this machine fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
DESKTOP = {"width": 1280, "height": 880}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 30_000
TOKEN = "page-token"
KNOWN_USER = 7  # in genre_taste, user 7 likes Comedy (users take the genres in turn)
FRESH_GENRE = TASTE_GENRES[2]


def screenshots_dir() -> Path:
    wanted = os.environ.get("SCREENSHOTS_DIR")
    folder = (REPO / wanted) if wanted else Path(tempfile.gettempdir()) / "movie-recommender-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(page, name: str) -> Path:
    """A PNG of the viewport, reduced to a 64-colour palette (text stays sharp; a fraction of the bytes)."""
    from PIL import Image

    path = screenshots_dir() / f"{name}.png"
    page.mouse.move(0, 0)  # no hover effect in the picture
    page.screenshot(path=path, animations="disabled")
    with Image.open(path) as image:
        image.convert("RGB").quantize(colors=64).save(path, optimize=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install -e '.[dev]'", pytrace=False)
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).is_file():
        pytest.fail(
            "no chromium: apt-get install chromium (Debian's; Playwright's own browser download is not used)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(taste_model_dir: Path, tmp_path_factory) -> Iterator[Server]:
    """The app as a visitor finds it: open writes, defaults otherwise."""
    state = tmp_path_factory.mktemp("page-state")
    with Server(taste_model_dir, {"STATE_DIR": str(state), "RELOAD_INTERVAL_S": "0"}) as server:
        yield server


@pytest.fixture(scope="module")
def strict_server(taste_model_dir: Path, tmp_path_factory) -> Iterator[Server]:
    """A server that needs a token for writes, and whose queue is full at the second waiting request."""
    settings = {
        "STATE_DIR": str(tmp_path_factory.mktemp("strict-state")),
        "RELOAD_INTERVAL_S": "0",
        "API_TOKEN": TOKEN,
        "MAX_QUEUE": "1",
        "BATCH_WINDOW_MS": "1000",
    }
    with Server(taste_model_dir, settings) as server:
        yield server


@pytest.fixture
def page(browser) -> Iterator:
    context = browser.new_context(viewport=DESKTOP, locale="en-GB")
    context.set_default_timeout(WAIT_MS)
    elsewhere: list[str] = []

    def only_this_machine(route) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_this_machine)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    # Answers other than 2xx are logged by the browser as "Failed to load resource": expected here.
    page.on(
        "console",
        lambda message: (
            message.type == "error"
            and "Failed to load resource" not in message.text
            and problems.append(message.text)
        ),
    )
    yield page
    context.close()
    assert not elsewhere, f"the page reached beyond this machine: {elsewhere}"
    assert not problems, problems


def open_page(page, server: Server, address: str = "") -> None:
    page.goto(f"{server.url}/{address}")
    page.wait_for_selector("body[data-ready]", state="attached")


def generation(page, list_id: str) -> int:
    return int(page.locator(f"#{list_id}").get_attribute("data-generation") or 0)


def wait_for_load(page, list_id: str, after: int) -> str:
    """Waits until a list finished a load begun after generation `after`; its state."""
    page.wait_for_function(
        """([id, after]) => {
            const list = document.getElementById(id);
            return Number(list.dataset.generation || 0) > after && list.dataset.state !== "loading";
        }""",
        arg=[list_id, after],
    )
    return page.locator(f"#{list_id}").get_attribute("data-state")


def wait_for_text(page, element_id: str, text: str) -> None:
    # A function, not an expression: Playwright evaluates a polled expression with eval(), which
    # the page's Content Security Policy refuses.
    page.wait_for_function(
        "([id, text]) => document.getElementById(id).textContent.includes(text)", arg=[element_id, text]
    )


def listed(page, list_id: str) -> list[int]:
    return [
        int(i) for i in page.locator(f"#{list_id} > li").evaluate_all("e => e.map(x => x.dataset.movieId)")
    ]


def shown_title(title: str) -> str:
    """A title as the page shows it: the year after the name, without brackets."""
    return re.sub(r"\s*\((\d{4})\)$", r" \1", title)


def show_known_user(page, user_id: int, k: int) -> None:
    before = generation(page, "known-recs")
    panel = page.locator("#panel-known")
    panel.get_by_label("User id").fill(str(user_id))
    panel.get_by_label("How many").fill(str(k))
    panel.get_by_role("button", name="Show").click()
    wait_for_load(page, "known-recs", before)
    wait_for_load(page, "known-rated", before)


def start_fresh(page) -> int:
    """Opens "Start fresh" and waits for its first loads; the id the page chose."""
    page.get_by_role("tab", name="Start fresh").click()
    page.wait_for_selector("#search-results[data-state=ready]", state="attached")
    page.wait_for_selector("#fresh-recs[data-state=empty]", state="attached")
    return int(page.locator("#panel-fresh").get_by_label("Your user id").input_value())


def show_from(page, element_id: str) -> None:
    """Scrolls the box holding an element to the top of the viewport."""
    page.evaluate("id => document.getElementById(id).closest('section').scrollIntoView()", element_id)


def no_sideways_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"the page is {width} px wide"


# ---------------------------------------------------------------------------------------------


def test_a_known_users_lists_render_and_match_the_apis_answers(page, server):
    open_page(page, server)
    show_known_user(page, KNOWN_USER, 5)

    expected = server.fetch(f"/users/{KNOWN_USER}/recommendations?k=5&explain=true")["recommendations"]
    items = page.locator("#known-recs > li")
    assert listed(page, "known-recs") == [item["movie_id"] for item in expected]
    for position, item in enumerate(expected):
        shown = items.nth(position)
        assert shown.locator(".movie-title").inner_text() == shown_title(item["title"])
        assert shown.locator(".genres li").all_inner_texts() == item["genres"]
        assert float(shown.locator(".predicted .value").inner_text()) == pytest.approx(
            item["predicted_rating"], abs=0.005
        )
        assert float(shown.locator(".score .value").inner_text()) == pytest.approx(item["score"], abs=0.0005)
        assert item["because"] is not None
        assert shown.locator(".because cite").inner_text() == item["because"]["title"]

    highest = server.fetch(f"/users/{KNOWN_USER}/ratings?limit=5")["ratings"]
    assert listed(page, "known-rated") == [item["movie_id"] for item in highest]
    stars = page.locator("#known-rated .predicted .value").all_inner_texts()
    assert [float(s) for s in stars] == [item["rating"] for item in highest]
    assert page.url.endswith(f"#user={KNOWN_USER}&k=5&by=ranking"), "the address can be shared"

    screenshot(page, "known-user")
    page.set_viewport_size(PHONE)
    no_sideways_scroll(page)
    show_from(page, "known-recs-heading")
    screenshot(page, "known-user-390")


def test_k_and_the_order_change_the_list_and_a_user_can_be_picked_at_random(page, server):
    open_page(page, server, f"#user={KNOWN_USER}&k=3&by=rating")
    page.wait_for_selector("#known-recs[data-state=ready]", state="attached")
    by_rating = server.fetch(f"/users/{KNOWN_USER}/recommendations?k=3&rank_by=rating")["recommendations"]
    assert listed(page, "known-recs") == [item["movie_id"] for item in by_rating]

    before = generation(page, "known-recs")
    page.get_by_role("button", name="Pick one at random").click()
    assert wait_for_load(page, "known-recs", before) == "ready"
    picked = int(page.locator("#known-id").input_value())
    assert 1 <= picked <= server.fetch("/model")["data"]["users"]
    assert len(listed(page, "known-recs")) == 3


def test_a_fresh_user_who_rates_five_movies_of_a_genre_sees_the_list_follow(page, server):
    open_page(page, server)
    user_id = start_fresh(page)
    assert user_id >= 1_000_000, "a fresh id lies outside the data set's ids"
    assert "No ratings yet" in page.locator("#fresh-recs-status").inner_text()

    page.locator("#panel-fresh").get_by_label("Title").fill(FRESH_GENRE.lower())
    page.get_by_role("button", name="Search", exact=True).click()
    wait_for_text(page, "search-status", f"match “{FRESH_GENRE.lower()}”")  # not "Searching for"
    results = page.locator("#search-results > li")
    rated: list[int] = []
    previous: list[int] = []
    for position in range(5):
        movie = results.nth(position)
        rated.append(int(movie.get_attribute("data-movie-id")))
        before = generation(page, "fresh-recs")
        movie.locator("label.half[data-value='5']").click()
        assert wait_for_load(page, "fresh-recs", before) == "ready"
        shown = listed(page, "fresh-recs")
        assert len(shown) == 10
        assert shown != previous, f"the list did not change after rating {position + 1}"
        assert not set(rated) & set(shown), "a rated movie is never recommended back"
        previous = shown

    genres = page.locator("#fresh-recs > li .genres").all_inner_texts()
    leaning = sum(text.split() == [FRESH_GENRE] for text in genres)
    assert leaning >= 8, f"{leaning} of 10 recommendations are {FRESH_GENRE}: {genres}"
    answer = server.fetch(f"/users/{user_id}/recommendations?k=10&explain=true")
    assert answer["source"] == "fold-in"
    assert shown == [item["movie_id"] for item in answer["recommendations"]]
    stored = server.fetch(f"/users/{user_id}/ratings?limit=100")["ratings"]
    assert sorted(item["movie_id"] for item in stored) == sorted(rated)
    assert {item["rating"] for item in stored} == {5.0}
    assert listed(page, "fresh-rated") and set(listed(page, "fresh-rated")) == set(rated)

    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "start-fresh")
    page.set_viewport_size(PHONE)
    no_sideways_scroll(page)
    show_from(page, "fresh-recs-heading")
    screenshot(page, "start-fresh-390")


def test_a_rating_is_given_and_removed_by_keyboard_alone_with_focus_always_visible(page, server):
    open_page(page, server)
    keyboard = page.keyboard

    def tab_to(selector: str, limit: int = 40) -> None:
        for _ in range(limit):
            keyboard.press("Tab")
            if page.evaluate("s => document.activeElement.matches(s)", selector):
                outline = page.evaluate(
                    """() => {
                        const focused = document.activeElement;
                        const radio = focused.matches("input[type=radio]");
                        const shown = radio ? focused.nextElementSibling : focused;
                        const style = getComputedStyle(shown);
                        return style.outlineStyle === "none" ? 0 : parseFloat(style.outlineWidth);
                    }"""
                )
                assert outline >= 2, f"focus on {selector} is not visible"
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("#tab-known")
    keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tab-fresh"
    page.wait_for_selector("#search-results[data-state=ready]", state="attached")
    page.wait_for_selector("#fresh-recs[data-state=empty]", state="attached")
    user_id = int(page.locator("#fresh-id").input_value())

    tab_to("#search-query")
    keyboard.type("drama movie 1")
    keyboard.press("Enter")
    wait_for_text(page, "search-status", "match “drama movie 1”")
    tab_to("#search-results input[type=radio]")
    movie_id = int(page.evaluate("document.activeElement.closest('li').dataset.movieId"))
    for _ in range(12):
        if page.evaluate("document.activeElement.value") == "4.5":
            break
        keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.value") == "4.5"
    before = generation(page, "fresh-recs")
    keyboard.press("Enter")
    assert wait_for_load(page, "fresh-recs", before) == "ready"
    stored = server.fetch(f"/users/{user_id}/ratings?limit=10")["ratings"]
    assert [(item["movie_id"], item["rating"]) for item in stored] == [(movie_id, 4.5)]
    assert page.locator(f"#fresh-rated > li[data-movie-id='{movie_id}'] .value").inner_text() == "4.5"

    before = generation(page, "fresh-recs")
    tab_to("#fresh-rated button.remove")
    keyboard.press("Enter")
    assert wait_for_load(page, "fresh-recs", before) == "empty"
    assert "No ratings yet" in page.locator("#fresh-recs-status").inner_text()
    with pytest.raises(urllib.error.HTTPError, match="404"):
        server.fetch(f"/users/{user_id}/ratings")


def test_every_control_has_a_name_and_the_page_fits_390_px(page, server):
    open_page(page, server, f"#user={KNOWN_USER}&k=10")
    page.wait_for_selector("#known-recs[data-state=ready]", state="attached")
    start_fresh(page)
    page.wait_for_selector("#loss-figure:not([hidden])")
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll("input, select, textarea, button, a[href], fieldset")]
            .filter((control) => {
                const labelled = control.getAttribute("aria-labelledby");
                const name = control.getAttribute("aria-label")
                    || (labelled && document.getElementById(labelled)?.textContent)
                    || [...(control.labels || [])].map((label) => label.textContent).join(" ")
                    || (control.matches("fieldset") ? control.querySelector("legend")?.textContent : "")
                    || (control.matches("button, a") ? control.textContent : "");
                return !name || !name.trim();
            })
            .map((control) => control.outerHTML.slice(0, 120))"""
    )
    assert unnamed == []
    assert page.locator("#loss-image").evaluate("image => image.naturalWidth") > 0
    assert page.get_by_role("radio", name="4.5 stars").count() == 10, "one half star of each search result"
    for tab in ("Be a known user", "Start fresh"):
        page.get_by_role("tab", name=tab).click()
        page.set_viewport_size(PHONE)
        no_sideways_scroll(page)
        page.set_viewport_size(DESKTOP)


def test_the_model_panel_shows_the_bundles_facts_and_figures(page, server):
    open_page(page, server)
    model = server.fetch("/model")
    panel = page.locator("#model")
    page.wait_for_selector("#loss-figure:not([hidden])")
    assert model["version"] in panel.locator("#model-facts").inner_text()
    assert f"{model['data']['ratings']:,} ratings by {model['data']['users']:,} users" in panel.inner_text()
    rows = {
        row.locator("th").evaluate("th => th.firstChild.textContent"): row.locator("td").all_inner_texts()
        for row in panel.locator("tbody tr").all()
    }
    assert set(rows) == set(model["metrics"])
    for name, shown in rows.items():
        for text, key in zip(shown, ("rmse", "ndcg@10"), strict=True):
            value = model["metrics"][name][key]
            assert text.startswith("—") if value is None else text == f"{value:.4f}", (name, key, text)


# Error states, on a server that needs a token for writes and turns away a second waiting request.


def test_an_unknown_user_is_said_in_words(page, strict_server):
    open_page(page, strict_server)
    show_known_user(page, 999_999_999, 10)
    for status in ("#known-recs-status", "#known-rated-status"):
        assert "No user 999999999" in page.locator(status).inner_text()
    assert page.locator("#known-recs").get_attribute("data-state") == "error"


def test_an_overloaded_server_is_said_in_words_and_try_again_works(page, strict_server):
    open_page(page, strict_server)
    stop = threading.Event()

    def keep_the_queue_full() -> None:
        while not stop.is_set():
            try:
                strict_server.fetch("/users/1/recommendations", timeout=10)
            except OSError:
                time.sleep(0.01)  # turned away: the queue is full already

    threads = [threading.Thread(target=keep_the_queue_full, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(5):
            show_known_user(page, KNOWN_USER, 5)
            if "overloaded" in page.locator("#known-recs-status").inner_text():
                break
        status = page.locator("#known-recs-status").inner_text()
        assert "overloaded" in status and "Try again in 1 s" in status, status
        assert page.locator("#known-rated").get_attribute("data-state") == "ready", "ratings do not queue"
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    before = generation(page, "known-recs")
    page.locator("#known-recs-status").get_by_role("button", name="Try again").click()
    assert wait_for_load(page, "known-recs", before) == "ready"


def test_no_ratings_yet_and_writes_that_need_a_token_are_said_in_words(page, strict_server):
    open_page(page, strict_server)
    user_id = start_fresh(page)
    assert "No ratings yet" in page.locator("#fresh-recs-status").inner_text()
    assert "not rated anything yet" in page.locator("#fresh-rated-status").inner_text()

    first = page.locator("#search-results > li").first
    movie_id = int(first.get_attribute("data-movie-id"))
    first.locator("label.half[data-value='4']").click()
    token_form = page.locator("#token-form")
    token_form.wait_for(state="visible")
    assert "needs a token" in token_form.inner_text()
    assert "Not saved" in page.locator("#search-status").inner_text()
    assert page.evaluate("document.activeElement.id") == "token", "the token field takes the focus"

    page.get_by_label("API token").fill("wrong-token")
    page.get_by_role("button", name="Save the token and retry").click()
    wait_for_text(page, "token-why", "refused")
    before = generation(page, "fresh-recs")
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Save the token and retry").click()
    assert wait_for_load(page, "fresh-recs", before) == "ready"
    assert token_form.is_hidden()
    stored = strict_server.fetch(f"/users/{user_id}/ratings")["ratings"]
    assert [(item["movie_id"], item["rating"]) for item in stored] == [(movie_id, 4.0)]
    assert page.evaluate("sessionStorage.getItem('movie-recommender.api-token')") == TOKEN
    request = urllib.request.Request(
        f"{strict_server.url}/users/{user_id}/ratings/{movie_id}", method="DELETE"
    )
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(request, timeout=10)
