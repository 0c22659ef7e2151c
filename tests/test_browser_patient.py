"""The patient's space in a real browser, at desktop and phone widths: log in as Marie Dupont
through the local OpenID provider, open her reports, open a trend, read a point's value with
the keyboard, and check the band, the marked points and the table."""

from playwright.sync_api import expect

from tests.results import GLUCOSE, glucose, reported


def test_the_patient_reads_her_reports_and_her_glucose_trend(
        fhir, lab_middleware, desk, biologist, web_root, page_as, shots, rng) -> None:
    for when, value in (("2026-01-12T08:00:00+01:00", 5.2), ("2026-06-08T08:00:00+02:00", 6.4),
                        ("2026-11-02T08:00:00+01:00", 7.1)):
        reported(fhir, lab_middleware, desk, biologist, web_root, rng, [GLUCOSE], {GLUCOSE[0]: glucose(value)}, when)

    for width, height, name in ((1280, 900, "desktop"), (375, 812, "phone")):
        page = page_as("patient.dupont", viewport=(width, height))
        page.get_by_role("link", name="Mes résultats").click()
        expect(page.get_by_role("heading", name="Mes comptes rendus")).to_be_visible()
        shots(page, f"{name}-home")
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing wider than the screen

        page.get_by_label("Rechercher une analyse").fill("glycémie")
        expect(page.locator("#analyses")).to_contain_text("Glycémie")
        page.locator("#analyses").get_by_role("link", name="Glycémie").first.click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("Glycémie")
        chart = page.locator("svg.trend")
        expect(chart.locator("rect.band")).to_have_count(1)
        expect(chart.locator("g.point")).not_to_have_count(0)
        expect(chart.locator("g.point.out").first).to_be_attached()  # 6.4 and 7.1 are above 6.1
        expect(page.get_by_role("table")).to_contain_text("7,1 mmol/L")
        chart.locator("g.point").last.focus()
        expect(chart.locator("g.point").last.locator("text.tip")).to_be_visible()  # the value on focus
        shots(page, f"{name}-trend")
        assert page.evaluate("document.documentElement.scrollWidth") <= width

        page.go_back()
        page.get_by_role("link", name="Voir le compte rendu").first.click()
        expect(page.locator("body")).to_contain_text("Glycémie")  # the ANS stylesheet's rendering
        shots(page, f"{name}-report")
