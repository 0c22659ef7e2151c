"""Headers every answer carries so that a browser treats bilan's pages safely: no sniffing of
content types anywhere; on HTML pages a Content-Security-Policy allowing only what the
templates use, and no framing by other sites.

What the templates need: htmx from /static (a script of our own), inline `<style>` blocks
and `style=` attributes (and the `<style>` htmx adds for its indicators), the reception
sheet's `onclick="window.print()"` (allowed by its hash alone), SVG charts drawn inline.
The PDF of a report may be shown by bilan's own pages (object/frame 'self'), so it may be
framed by them, never by another site. A page that sets its own policy (the CDA viewer's
stricter one) keeps it.
"""

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

PRINT_BUTTON = "'sha256-MguIPR6qNR8D3B+eAlK+bIRTZe8t3wkOY4B/56Me9FU='"  # onclick="window.print()"
PAGE_POLICY = "; ".join([
    "default-src 'self'",
    f"script-src 'self' 'unsafe-hashes' {PRINT_BUTTON}",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "object-src 'self'",
    "frame-src 'self'",
    "base-uri 'self'",
    "frame-ancestors 'none'",
])
SELF_FRAMED = "frame-ancestors 'self'"
REFERRER = "same-origin"


async def security_headers(message: Message, scope: Scope) -> None:
    """A before_send hook: runs on every response, errors and 404s included."""
    if message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    headers["X-Content-Type-Options"] = "nosniff"
    media = (headers.get("content-type") or "").split(";")[0].strip().lower()
    if media == "text/html":
        policy = headers.get("content-security-policy")
        if policy is None:
            headers["Content-Security-Policy"] = PAGE_POLICY
            headers["X-Frame-Options"] = "DENY"
        elif "frame-ancestors" not in policy:
            headers["Content-Security-Policy"] = f"{policy}; {SELF_FRAMED}"
            headers["X-Frame-Options"] = "SAMEORIGIN"
        headers.setdefault("Referrer-Policy", REFERRER)
    elif media == "application/pdf":
        headers.setdefault("Content-Security-Policy", SELF_FRAMED)
        headers["X-Frame-Options"] = "SAMEORIGIN"
