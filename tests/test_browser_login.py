"""Logging in and out of bilan's pages in a real browser."""

from playwright.sync_api import expect

from tests.browser import wait_for_home


def test_reception_logs_in_and_out(page_as, shots, web_root: str) -> None:
    page = page_as("accueil.martin", viewport=(1280, 800))

    expect(page.get_by_role("heading", name="Bonjour")).to_contain_text("Julie Martin")
    expect(page.locator("header")).to_contain_text("accueil du laboratoire")
    shots(page, "home")

    page.get_by_role("button", name="Se déconnecter").click()
    # The provider asks whether to end its own session too; its "yes" button has the same words.
    expect(page.get_by_role("heading", name="Déconnexion")).to_be_visible()
    page.get_by_role("button", name="Se déconnecter").click()
    wait_for_home(page, web_root)
    expect(page.get_by_role("link", name="Se connecter")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("Julie Martin")
    shots(page, "logged-out")


def test_login_with_the_keyboard_alone(new_page, shots, web_root: str, issuer: str) -> None:
    page = new_page()
    page.goto(f"{web_root}/auth/login")
    page.wait_for_url(f"{issuer}/interaction/**")
    expect(page.locator("input[name=login]")).to_be_focused()  # autofocus: no click needed

    page.keyboard.type("bio.durand")
    page.keyboard.press("Tab")
    page.keyboard.type("demo")
    shots(page, "form-filled")
    page.keyboard.press("Enter")

    wait_for_home(page, web_root)
    expect(page.get_by_role("heading", name="Bonjour")).to_contain_text("Luc Durand")
    shots(page, "home")
