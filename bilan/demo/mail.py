"""The demo's mail relay: a local SMTP server (aiosmtpd) standing in for the MSSanté operator's,
keeping every message it receives in a Maildir under demo-mail/."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox

from bilan.settings import ROOT, get_settings

MAILDIR = ROOT / "demo-mail"


@contextmanager
def local_relay(maildir: Path = MAILDIR) -> Iterator[Path]:
    """Serve SMTP at the configured smtp_host:smtp_port until the block ends; yields the
    Maildir (one file per message under new/, readable by any mail client)."""
    settings = get_settings()
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # its lines name senders and recipients
    controller = Controller(Mailbox(maildir), hostname=settings.smtp_host, port=settings.smtp_port)
    try:
        controller.start()
    except (OSError, RuntimeError) as error:
        raise RuntimeError(f"the demo mail relay did not start: is {settings.smtp_host}:"
                           f"{settings.smtp_port} free (--smtp-port, BILAN_SMTP_PORT)?") from error
    print(f"Mail relay at {settings.smtp_host}:{settings.smtp_port}; messages in {maildir}/new",
          flush=True)
    try:
        yield maildir
    finally:
        controller.stop()
