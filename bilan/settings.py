"""One typed settings object, read from BILAN_* environment variables."""

import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bilan import data

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BILAN_")

    database_url: str = Field(
        default=f"sqlite+aiosqlite:///{ROOT / 'bilan.db'}",
        description="SQLAlchemy async URL; SQLite file by default, postgresql+asyncpg:// in production.",
    )
    database_schema: str | None = Field(
        default=None, description="PostgreSQL schema to work in (tests use a throw-away one)."
    )
    base_url: str = Field(
        default="http://localhost:8000/fhir",
        description="Public base URL of the FHIR API, used in fullUrl, Location and paging links.",
    )
    catalogue_path: Path = Field(
        default=data.CATALOGUE,
        description="CSV of the lab's exam catalogue loaded by `bilan demo` and `bilan catalogue` "
                    "(default: the demo catalogue shipped in bilan/data).",
    )
    oidc_issuer: str = Field(
        default="http://127.0.0.1:9400",
        description="OpenID provider whose access tokens bilan accepts (Pro Santé Connect, the "
                    "patients' provider, or the local deploy/idp provider).",
    )
    oidc_client_id: str = Field(default="bilan-web", description="bilan's client id at the provider.")
    oidc_client_secret: str = Field(
        default="bilan-web-demo-secret", description="bilan's client secret at the provider.")
    session_secret: str = Field(
        default_factory=lambda: secrets.token_hex(32), pattern=r"^[0-9a-fA-F]{64}$",
        description="Key (64 hex digits) encrypting session cookies; the same for every worker.",
    )
    session_max_age: int = Field(default=8 * 3600, description="Seconds a login lasts at most.")
    session_idle: int = Field(default=30 * 60, description="Seconds without activity that end a login.")
    token_audience: str | None = Field(
        default=None, description="Audience access tokens must name; the FHIR base URL if unset.",
    )
    max_body_bytes: int = Field(default=5 * 1024 * 1024, description="Largest request body accepted.")
    default_page_size: int = Field(default=20, description="Search page size when _count is absent.")
    max_page_size: int = Field(default=500, description="Upper bound for _count.")
    pool_size: int = Field(default=10, description="Database connections kept per worker (PostgreSQL).")
    database_connect_timeout: float = Field(
        default=5, description="Seconds to wait for a database connection (new, or free in the "
                               "pool) before answering 503 (PostgreSQL).")
    statement_timeout_ms: int = Field(
        default=15000, description="Longest an SQL statement may run before PostgreSQL cancels it "
                                   "and the request gets a 503; 0 turns the limit off.")
    log_level: str = Field(default="INFO", description="Application log level.")
    idp_port: int = Field(default=9400, description="Port of the local OpenID provider (deploy/idp) "
                          "that `bilan demo` starts (--idp-port).")
    smtp_host: str = Field(default="127.0.0.1", description="Mail relay (MSSanté operator's in production).")
    smtp_port: int = Field(default=8025, description="Mail relay port (`bilan demo` serves its own relay "
                                                     "there: --smtp-port).")
    smtp_starttls: bool = Field(default=False, description="Upgrade the relay connection with STARTTLS.")
    smtp_username: str | None = Field(default=None, description="Relay login, if it wants one.")
    smtp_password: str | None = Field(default=None, description="Relay password, if it wants one.")
    mail_from: str = Field(default="bilan@labo-paris-est.mssante.fr",
                           description="Sender address of bilan's notification e-mails.")
    dmp_url: str = Field(default="", description="The shared record's (DMP) MHD endpoint: issued "
                         "reports are POSTed there as Provide Document Bundles, and the biologist consults "
                         "the patient's documents there (docs/dmp.md); empty: neither.")
    dmp_username: str | None = Field(default=None, description="Login at the DMP (HTTP Basic), if it wants one.")
    dmp_password: str | None = Field(default=None, description="Password at the DMP (HTTP Basic).")
    dmp_token: str | None = Field(default=None, description="Bearer token for the DMP, if it wants one instead.")
    dmp_history_months: int = Field(default=12, description="How far back the lab's reports go to the DMP when "
                                    "a patient's INS becomes qualified or their opposition is withdrawn.")
    partner_lab_finess: str = Field(default="690100235", description="FINESS of the partner lab the "
                                    "exams missing from the catalogue are sent to, with their tubes and a "
                                    "transfer slip; it must be in bilan's directory (default: the demo's).")
    outbox_poll_seconds: float = Field(default=1.0, description="How often the delivery worker "
                                       "looks for due notifications.")
    prescriber_notice_seconds: float = Field(default=60, description="How long the first news of an "
                                             "order waits for the next ones to the same prescriber, "
                                             "all sent in one e-mail (urgent news: at once).")
    outbox_max_attempts: int = Field(default=20, description="Delivery attempts before a "
                                     "notification is marked failed (back-off doubles, 1 s to 1 h).")
    outbox_max_backoff_seconds: float = Field(default=3600, description="Longest wait between "
                                              "two delivery attempts of a notification.")


def audience(settings: Settings) -> str:
    return settings.token_audience or settings.base_url.rstrip("/")


def web_root(settings: Settings) -> str:
    """Where the web pages live: the FHIR base URL without its /fhir."""
    return settings.base_url.rstrip("/").removesuffix("/fhir")


@lru_cache
def get_settings() -> Settings:
    return Settings()
