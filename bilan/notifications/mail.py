"""bilan's notification e-mails, sent through the configured relay (the MSSanté operator's in
production, a local aiosmtpd server in the demo and the tests)."""

import base64
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from bilan.settings import Settings

SMTP_TIMEOUT = 30  # seconds; under the worker's lease


def message(sender: str, to: str, subject: str, text: str, outbox_id: int,
            attachments: list[dict[str, str]] | None = None) -> EmailMessage:
    """A plain-text message. Its Message-ID is the outbox row's, the same at every retry, so
    a mail sent twice (a worker died after the relay took it) can be recognised."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = subject
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = f"<outbox-{outbox_id}@{sender.rpartition('@')[2] or 'bilan'}>"
    mail.set_content(text)
    for attachment in attachments or []:
        maintype, _, subtype = attachment["content_type"].partition("/")
        mail.add_attachment(base64.b64decode(attachment["data"]), maintype=maintype, subtype=subtype,
                            filename=attachment["filename"])
    return mail


async def send(mail: EmailMessage, settings: Settings) -> None:
    """Hand the message to the relay; raises aiosmtplib.SMTPException or OSError if it won't."""
    await aiosmtplib.send(
        mail, hostname=settings.smtp_host, port=settings.smtp_port,
        start_tls=settings.smtp_starttls, username=settings.smtp_username,
        password=settings.smtp_password, timeout=SMTP_TIMEOUT)
