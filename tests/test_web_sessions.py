"""Web sessions live on the server: logging out ends them for every copy of the cookie, idle
and over-long sessions are refused for good, a login always gets a new token, and the database
holds no usable token."""

import hashlib
import time

import httpx
from sqlalchemy import text

from bilan.settings import Settings
from bilan.storage.database import create_engine
from tests.helpers import run
from tests.servers import running
from tests.web import follow, form, log_in

KEY = "bilan_session"


def replay(root: str, token: str, path: str = "/") -> httpx.Response:
    """A request from elsewhere carrying a copy of someone's session cookie."""
    return httpx.get(f"{root}{path}", headers={"Cookie": f"{KEY}={token}"}, timeout=30)


def sent_to_login(response: httpx.Response) -> bool:
    """A page refused for want of a login: the browser is sent to log in (and back)."""
    return response.is_redirect and response.headers["location"].startswith("/auth/login?next=")


def dropped(response: httpx.Response) -> bool:
    """Whether the response tells the browser to forget its session cookie."""
    return any(h.startswith(f'{KEY}="";') or h.startswith(f"{KEY}=;")
               for h in response.headers.get_list("set-cookie"))


def test_a_copied_cookie_is_refused_after_logout(web_root: str, server: str) -> None:
    browser, home = log_in(web_root, "dr.lambert")
    copied = browser.cookies[KEY]
    assert "Claire Lambert" in replay(web_root, copied).text  # the copy works while logged in
    assert replay(web_root, copied, "/prescripteur").status_code == 200

    action, fields = form(home)
    out = browser.post(action, data=fields)
    assert out.is_redirect and dropped(out)
    assert KEY not in browser.cookies

    for path in ("/", "/prescripteur"):
        refused = replay(web_root, copied, path)
        assert "Claire Lambert" not in refused.text and dropped(refused)
    assert "Se connecter" in replay(web_root, copied).text
    assert sent_to_login(replay(web_root, copied, "/prescripteur"))


def test_a_login_gets_a_new_session_token(web_root: str, server: str) -> None:
    planted = "a-token-someone-else-chose-and-will-reuse"
    browser = httpx.Client(timeout=30)
    started = browser.get(f"{web_root}/auth/login", headers={"Cookie": f"{KEY}={planted}"})
    pre_login = started.cookies[KEY]
    assert pre_login != planted

    action, _ = form(follow(browser, started))
    home = follow(browser, browser.post(action, data={"login": "dr.lambert", "password": "demo"}))
    assert "Claire Lambert" in home.text
    logged_in = browser.cookies[KEY]
    assert logged_in not in (pre_login, planted)
    for earlier in (pre_login, planted):
        assert "Claire Lambert" not in replay(web_root, earlier).text
        assert sent_to_login(replay(web_root, earlier, "/prescripteur"))
    assert "Claire Lambert" in replay(web_root, logged_in).text
    browser.close()


def test_the_session_cookie_flags(settings: Settings, web_root: str, second_root: str,
                                  server: str) -> None:
    browser, _ = log_in(web_root, "bio.durand")
    cookie = next(c for c in browser.cookies.jar if c.name == KEY)
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.path == "/" and not cookie.secure
    assert (cookie.get_nonstandard_attr("SameSite") or "").lower() == "lax"
    assert 40 <= len(cookie.value) <= 48  # 256 random bits, base64url
    browser.close()

    https = settings.model_copy(update={"base_url": f"{second_root.replace('http:', 'https:')}/fhir",
                                        "token_audience": settings.base_url})
    with running(https):  # served over plain HTTP here, but its public address is https
        started = httpx.get(f"{second_root}/auth/login", timeout=30)
    assert any(h.startswith(f"{KEY}=") and "Secure" in h for h in started.headers.get_list("set-cookie"))


def test_the_database_holds_no_usable_token(settings: Settings, web_root: str, server: str) -> None:
    browser, _ = log_in(web_root, "accueil.martin")
    token = browser.cookies[KEY]
    browser.close()

    async def rows() -> list[dict]:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:
                return [dict(r) for r in (await conn.execute(text("SELECT * FROM web_sessions"))).mappings()]
        finally:
            await engine.dispose()

    stored = run(rows())
    assert hashlib.sha256(token.encode()).hexdigest() in {r["id"] for r in stored}
    assert not any(token in str(value) for row in stored for value in row.values())


def test_an_idle_session_is_refused_and_not_renewed(settings: Settings, second_root: str,
                                                    server: str) -> None:
    idle = settings.model_copy(update={"base_url": f"{second_root}/fhir", "session_idle": 3,
                                       "token_audience": settings.base_url})
    with running(idle):
        browser, home = log_in(second_root, "dr.lambert")
        token = browser.cookies[KEY]
        for _ in range(4):  # activity keeps it alive past the idle timeout
            time.sleep(1)
            assert "Claire Lambert" in replay(second_root, token).text

        time.sleep(3.5)
        refused = replay(second_root, token)
        assert "Claire Lambert" not in refused.text and "Se connecter" in refused.text
        assert dropped(refused)
        assert sent_to_login(replay(second_root, token, "/prescripteur"))  # still refused
        assert "Claire Lambert" not in follow(browser, browser.get(f"{second_root}/")).text
        browser.close()


def test_a_session_ends_at_its_lifetime_however_active(settings: Settings, second_root: str,
                                                       server: str) -> None:
    short = settings.model_copy(update={"base_url": f"{second_root}/fhir", "session_max_age": 3,
                                        "token_audience": settings.base_url})
    with running(short):
        browser, _ = log_in(second_root, "dr.lambert")
        token = browser.cookies[KEY]
        browser.close()
        opened = time.monotonic()
        while "Claire Lambert" in replay(second_root, token).text:
            assert time.monotonic() - opened < 6, "the session outlived its lifetime"
            time.sleep(0.3)
        assert time.monotonic() - opened > 1.5  # it was alive, and activity did not save it
        time.sleep(0.5)
        assert sent_to_login(replay(second_root, token, "/prescripteur"))
