"""Browser-less use of bilan's pages: log in through the provider's form, post bilan's forms
with their CSRF token, as a person's browser would."""

import re
from html import unescape

import httpx


def follow(browser: httpx.Client, response: httpx.Response) -> httpx.Response:
    while response.is_redirect:
        response = browser.get(str(response.url.join(response.headers["location"])))
    return response


def form(page: httpx.Response) -> tuple[str, dict[str, str]]:
    """The first form of a page: its action and the values of its inputs."""
    action = unescape(re.search(r'<form[^>]*action="([^"]+)"', page.text).group(1))
    fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page.text))
    return str(page.url.join(action)), fields


def log_in(web_root: str, username: str) -> tuple[httpx.Client, httpx.Response]:
    """A login: the provider's form posted as a person would fill it in."""
    browser = httpx.Client(timeout=30)
    login_page = follow(browser, browser.get(f"{web_root}/auth/login"))
    assert "Connexion" in login_page.text
    action, _ = form(login_page)
    home = follow(browser, browser.post(action, data={"login": username, "password": "demo"}))
    return browser, home


def csrf_token(page: httpx.Response) -> str:
    return re.search(r'name="_csrf_token" value="([^"]+)"', page.text).group(1)


def submit(browser: httpx.Client, page: httpx.Response, action: str, data: dict[str, str]) -> httpx.Response:
    """Post one of the page's forms (its action path) with the page's CSRF token; follow redirects."""
    return follow(browser, browser.post(str(page.url.join(action)), data={**data, "_csrf_token": csrf_token(page)}))
