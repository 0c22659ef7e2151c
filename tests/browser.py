"""Browser tests: Debian's headless Chromium driven by Playwright, logged in through the
local OpenID provider as a person would, with screenshots kept under test-artifacts/."""

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from bilan.settings import ROOT

CHROMIUM = "/usr/bin/chromium"  # Debian's package (./dev test installs it); never a download
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
TIMEOUT_MS = 10_000  # everything is local: a step slower than this is a failure


@pytest.fixture(scope="session")
def browser(server: str) -> Iterator[Browser]:
    """One Chromium for the whole run. Playwright's sync API keeps an asyncio loop marked as
    running in this thread until it stops, and the teardown of `server` and of its database
    calls asyncio.run: depending on `server` makes pytest stop the browser first."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser tests need {CHROMIUM} (Debian package chromium; ./dev test installs it)")
    with sync_playwright() as playwright:
        # As root (containers, CI) Chromium's sandbox cannot start. Playwright already passes
        # --no-sandbox unless chromium_sandbox=True; said here so that it is not a surprise.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(server: str, web_root: str, browser: Browser) -> Iterator[Callable[..., Page]]:
    """new_page(viewport=(w, h)): a page in a browser context of its own (its own cookies),
    closed after the test."""
    contexts = []

    def open_page(viewport: tuple[int, int] = (1280, 800)) -> Page:
        width, height = viewport
        context = browser.new_context(viewport={"width": width, "height": height},
                                      locale="fr-FR", base_url=web_root)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page_as(new_page: Callable[..., Page], web_root: str, issuer: str) -> Callable[..., Page]:
    """page_as("bio.durand"): a page logged in to bilan, on its home page."""

    def log_in(username: str, viewport: tuple[int, int] = (1280, 800)) -> Page:
        page = new_page(viewport)
        page.goto(f"{web_root}/auth/login")
        page.wait_for_url(f"{issuer}/interaction/**")
        page.fill("input[name=login]", username)
        page.fill("input[name=password]", "demo")  # every demo account's password
        page.click("button[type=submit]")
        # Consent is granted automatically (deploy/idp): the provider sends us straight back.
        wait_for_home(page, web_root)
        return page

    return log_in


def wait_for_home(page: Page, web_root: str) -> None:
    """Wait for bilan's home page, saying what the browser shows if it never comes."""
    try:
        page.wait_for_url(f"{web_root}/")
    except PlaywrightTimeout as error:
        raise AssertionError(f"not on bilan's home page but {page.url}:\n"
                             f"{page.inner_text('body')[:500]}") from error


class Screenshots:
    """shots(page, "step"): test-artifacts/screenshots/<test>/<NN>-<step>.png, numbered in order."""

    def __init__(self, folder: Path):
        self.folder, self.taken = folder, 0

    def __call__(self, page: Page, step: str) -> Path:
        self.taken += 1
        path = self.folder / f"{self.taken:02d}-{_slug(step)}.png"
        page.screenshot(path=path, full_page=True)
        return path


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Screenshots:
    folder = SCREENSHOTS / _slug(request.node.name)
    shutil.rmtree(folder, ignore_errors=True)  # no stale pictures from an earlier run
    folder.mkdir(parents=True)
    return Screenshots(folder)


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "-", text).strip("-")


TABLET = (768, 1024)


def tab_to(page: Page, selector: str, most: int = 40) -> None:
    """Press Tab until `selector` has the focus, as a keyboard user moves through the page."""
    target = page.locator(selector)
    for _ in range(most):
        page.keyboard.press("Tab")
        if target.evaluate("element => element === document.activeElement"):
            return
    raise AssertionError(f"{selector} never got the focus in {most} Tab presses")


AXE = ROOT / "tests" / "axe" / "node_modules" / "axe-core" / "axe.min.js"  # ./dev test installs it
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = ("critical", "serious")


def assert_accessible(page: Page, name: str) -> None:
    """Run axe-core on the page as it is (WCAG 2.1 A and AA rules) and fail on any critical or
    serious violation, listing each rule with the elements it found. axe is evaluated through
    the DevTools protocol rather than added as a <script>: bilan's Content-Security-Policy
    (script-src 'self', and the report viewer's default-src 'none') rightly refuses an injected
    script tag, and a context with bypass_csp would no longer test the policy the pages really
    get (an embedded PDF it blocks, say)."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci` in tests/axe (./dev test does)")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    found = page.evaluate("""tags => axe.run(document, {runOnly: {type: 'tag', values: tags},
                                                       resultTypes: ['violations']})
        .then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                           nodes: v.nodes.map(n => n.target.join(' ') + ' — ' +
                                                              (n.failureSummary || '').split('\\n').slice(1).join(' '))})))""",
                          WCAG_21_AA)
    blocking = [v for v in found if v["impact"] in BLOCKING]
    if blocking:
        lines = [f"{name} ({page.url}): {len(blocking)} critical or serious accessibility violation(s)"]
        for violation in blocking:
            lines.append(f"- {violation['id']} [{violation['impact']}]: {violation['help']}")
            lines.extend(f"    {node}" for node in violation["nodes"])
        raise AssertionError("\n".join(lines))
