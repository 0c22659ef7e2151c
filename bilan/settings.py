"""One typed settings object, read from BILAN_* environment variables."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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
        default=ROOT.parent / "shared" / "catalogue" / "catalogue.csv",
        description="CSV of the lab's exam catalogue loaded by `bilan demo` and `bilan catalogue`.",
    )
    max_body_bytes: int = Field(default=5 * 1024 * 1024, description="Largest request body accepted.")
    default_page_size: int = Field(default=20, description="Search page size when _count is absent.")
    max_page_size: int = Field(default=500, description="Upper bound for _count.")
    pool_size: int = Field(default=10, description="Database connections kept per worker (PostgreSQL).")
    log_level: str = Field(default="INFO", description="Application log level.")


@lru_cache
def get_settings() -> Settings:
    return Settings()
