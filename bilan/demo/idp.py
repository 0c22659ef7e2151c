"""The demo's OpenID provider: deploy/idp (Node.js, oidc-provider), started beside bilan."""

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from bilan.demo.processes import stop
from bilan.settings import ROOT, Settings, get_settings

SERVER = ROOT / "deploy" / "idp" / "server.mjs"


@contextmanager
def local_provider(host: str, port: int) -> Iterator[str]:
    """Run the local provider for a bilan served at host:port; yields its issuer URL and
    points bilan's settings at it."""
    idp_port = Settings().idp_port  # read afresh: callers may have just set BILAN_IDP_PORT
    web = f"http://{host}:{port}"
    env = dict(os.environ, IDP_PORT=str(idp_port), IDP_HOST=host, BILAN_AUDIENCE=f"{web}/fhir",
               BILAN_WEB_REDIRECT_URIS=f"{web}/auth/callback", BILAN_POST_LOGOUT_URIS=f"{web}/")
    process = subprocess.Popen(["node", str(SERVER)], env=env, stdout=subprocess.PIPE, text=True)
    try:  # whatever stops bilan from here on (a signal, an error) stops the provider too
        assert process.stdout is not None
        ready = process.stdout.readline().strip()
        if not ready.startswith("idp ready at"):
            raise RuntimeError(f"the local OpenID provider did not start: is port {idp_port} free "
                               "(--idp-port, BILAN_IDP_PORT), did `npm ci` run in deploy/idp?")
        issuer = ready.removeprefix("idp ready at").strip()
        os.environ["BILAN_OIDC_ISSUER"] = issuer
        get_settings.cache_clear()
        print(f"OpenID provider at {issuer} (demo accounts: deploy/idp/README.md)", flush=True)
        yield issuer
    finally:
        stop(process)
