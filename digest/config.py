"""The configuration: one typed, frozen object built once from TOML.

Every default and every validation rule lives here.  Lookup order: ``--config
FILE``, else ``$DIGEST_CONFIG``, else ``./config.toml`` when present, else the
built-in defaults with data under ``./var/``.  Relative paths are relative to
the directory of the config file (or the working directory for the defaults).
Secrets are never in the file: it names the environment variables holding them.
"""

import os
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from digest.errors import ConfigError, QueryError

ENV_VAR = "DIGEST_CONFIG"
DEFAULT_FILE = "config.toml"

PositiveInt = Annotated[int, Field(gt=0)]
ConfigPath = Annotated[Path, Field(strict=False)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


class StorageConfig(Section):
    database: ConfigPath = Path("var/digest.db")
    keep_days: Annotated[int, Field(ge=1, le=36_500)] = 90
    keep_failed_days: Annotated[int, Field(ge=1, le=365)] = 14
    prune_at: str = "03:30"

    @field_validator("prune_at")
    @classmethod
    def _time(cls, value: str) -> str:
        return _clock_time(value)


def _clock_time(value: str) -> str:
    """A daily job's time of day."""
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError('must be "HH:MM" (24 h), in [schedule] timezone')
    return value


class InboxConfig(Section):
    dir: ConfigPath = Path("var/inbox")
    # A file is taken once unchanged since the previous poll or this old (``ingest.settled``).
    settle_seconds: Annotated[int, Field(ge=0, le=86_400)] = 10


class DeliveryConfig(Section):
    backend: Literal["maildir", "smtp"] = "maildir"
    from_: str = Field("Paper Digest <digest@example.org>", alias="from")

    @field_validator("from_")
    @classmethod
    def _address(cls, value: str) -> str:
        _, address = parseaddr(value)
        if "@" not in address or any(c in value for c in "\r\n"):
            raise ValueError('must be an address such as "Paper Digest <digest@example.org>"')
        return value

    maildir: ConfigPath = Path("var/mail")
    retries: Annotated[int, Field(ge=0, le=20)] = 3
    retry_base_seconds: Annotated[float, Field(gt=0)] = 2.0
    bounce_limit: PositiveInt = 3
    render_workers: Annotated[int, Field(ge=0, le=64)] = 0  # 0: one process per core


class SmtpConfig(Section):
    host: str = "127.0.0.1"
    port: Port = 25
    security: Literal["starttls", "tls", "none"] = "none"
    username: str = ""
    password_env: str = "DIGEST_SMTP_PASSWORD"
    timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    rate_per_second: Annotated[float, Field(ge=0)] = 0.0
    local_hostname: str = "localhost"

    def password(self) -> str | None:
        """The SMTP password from the environment, or None when unset."""
        return os.environ.get(self.password_env) or None


class FeedsConfig(Section):
    dir: ConfigPath = Path("var/feeds")
    max_entries: Annotated[int, Field(ge=1, le=1000)] = 50
    private_static: bool = False


class WebConfig(Section):
    base_url: str = "http://127.0.0.1:8080"
    enabled: bool = False
    host: str = "127.0.0.1"
    port: Port = 8080
    secret_env: str = "DIGEST_WEB_SECRET"
    confirm_hours: PositiveInt = 48
    subscribe_per_hour: Annotated[int, Field(ge=1, le=10_000)] = 5
    subscribe_per_address_per_hour: Annotated[int, Field(ge=1, le=100)] = 3
    preview_per_10_minutes: Annotated[int, Field(ge=1, le=10_000)] = 30
    feed_max_age_seconds: Annotated[int, Field(ge=0, le=86_400)] = 3600

    def secret(self) -> str | None:
        """The signing key from the environment, or None when unset."""
        return os.environ.get(self.secret_env) or None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _require_http(value).rstrip("/")


class DigestConfig(Section):
    max_papers: Annotated[int, Field(ge=1, le=200)] = 25
    lookback_days: Annotated[int, Field(ge=1, le=365)] = 7
    paper_url: str = "https://arxiv.org/search/?query={title}&searchtype=title"
    weekly_day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    send_empty: bool = False
    # "You may also like": at most this many papers the filter missed (0: never).
    suggestions: Annotated[int, Field(ge=0, le=10)] = 3

    @field_validator("paper_url")
    @classmethod
    def _http_with_title(cls, value: str) -> str:
        if "{title}" not in value:
            raise ValueError("must contain {title}, replaced by the URL-encoded paper title")
        return _require_http(value)  # readers follow it from mail and feeds


def _require_http(value: str) -> str:
    """A URL readers are sent to (the site, a paper's page) is an http(s) one."""
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


class ModelConfig(Section):
    """``[model]``: the readers' relevance model (``digest.relevance``)."""

    min_likes: Annotated[int, Field(ge=1, le=1000)] = 3
    dims: Annotated[int, Field(ge=8, le=512)] = 128
    max_terms: Annotated[int, Field(ge=1000, le=200_000)] = 20_000
    train_at: str = "04:30"

    @field_validator("train_at")
    @classmethod
    def _time(cls, value: str) -> str:
        return _clock_time(value)


class SubscriberTable(Section):
    """A ``[[subscribers]]`` table: synced by the service at start and on SIGHUP (``lifecycle``)."""

    email: str
    filter: str
    name: str = ""
    frequency: Literal["daily", "weekly"] = "daily"
    format: Literal["html", "text"] = "html"


class ScheduleConfig(Section):
    poll_seconds: Annotated[int, Field(ge=1, le=86_400)] = 60
    deliver_at: Annotated[tuple[str, ...], Field(strict=False, min_length=1)] = ("07:00",)
    timezone: str = "UTC"

    @field_validator("deliver_at")
    @classmethod
    def _times(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if value == ("after_ingest",):
            return value
        for item in value:
            if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", item):
                raise ValueError(
                    f'{item!r}: each entry must be "HH:MM" (24 h), or the list ["after_ingest"]'
                )
        return tuple(sorted(set(value)))

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                "must be an IANA time zone name such as UTC or Europe/Berlin"
            ) from None
        return value

    @property
    def after_ingest(self) -> bool:
        return self.deliver_at == ("after_ingest",)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


DURATION = re.compile(r"([1-9]\d{0,4})([mhd])")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86_400}
SOURCE_KINDS = ("daily-papers", "arxiv", "dump")


def duration_seconds(value: str) -> int:
    """``"30m"``, ``"1h"``, ``"1d"`` in seconds (the shape is checked where it is read)."""
    found = DURATION.fullmatch(value)
    assert found is not None
    return int(found.group(1)) * _UNIT_SECONDS[found.group(2)]


class SourceTable(Section):
    """A ``[[sources]]`` table: where digest fetches papers itself, and how often."""

    name: str
    kind: Literal["daily-papers", "arxiv", "dump"]
    url: str
    every: str = "1h"
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", value):
            raise ValueError(
                "must be 1 to 40 lower-case letters, digits and hyphens (it names files)"
            )
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("every")
    @classmethod
    def _every(cls, value: str) -> str:
        if not DURATION.fullmatch(value) or duration_seconds(value) < 300:
            raise ValueError('must be a duration of at least 5 minutes: "30m", "1h", "1d"')
        return value

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=duration_seconds(self.every))


class FetchConfig(Section):
    """What every source shares: how to ask (politely), and where raw responses are kept."""

    contact_url: str = ""
    archive_dir: ConfigPath = Path("var/archive")
    archive_days: Annotated[int, Field(ge=1, le=3650)] = 30
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    max_redirects: Annotated[int, Field(ge=0, le=20)] = 5
    max_megabytes: Annotated[int, Field(ge=1, le=1024)] = 20

    @field_validator("contact_url")
    @classmethod
    def _contact(cls, value: str) -> str:
        if value and not re.fullmatch(r"(https?://|mailto:)\S+", value):
            raise ValueError("must be an http(s):// or mailto: URL where you can be reached")
        return value


class LogConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class TopicTable(Section):
    """A ``[[topics]]`` table: a public feed of the papers matching ``filter``."""

    name: str
    filter: str
    slug: str = ""

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip() or any(c in value for c in "\r\n"):
            raise ValueError("must be a non-empty single line")
        return value.strip()

    @field_validator("filter")
    @classmethod
    def _parses(cls, value: str) -> str:
        """Refused at load (and so on SIGHUP, keeping the running config), not at the next job.
        The parser is imported here: a config without topics, and ``digest status``, need
        none of the filter language."""
        from digest.query import parse

        try:
            parse(value)
        except QueryError as err:
            raise ValueError(err.message) from None
        return value

    @field_validator("slug")
    @classmethod
    def _slug_shape(cls, value: str) -> str:
        if value and not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", value):
            raise ValueError("must be lower-case letters, digits and single hyphens")
        return value

    @property
    def feed_slug(self) -> str:
        """The slug given, else one from the name: ``Diffusion & Video`` -> ``diffusion-video``."""
        return self.slug or slugify(self.name)


def slugify(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", folded).strip("-") or "topic"


class Config(Section):
    """The whole configuration; ``source`` is the file it came from, if any."""

    storage: StorageConfig = StorageConfig()
    inbox: InboxConfig = InboxConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    smtp: SmtpConfig = SmtpConfig()
    feeds: FeedsConfig = FeedsConfig()
    web: WebConfig = WebConfig()
    digest: DigestConfig = DigestConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    model: ModelConfig = ModelConfig()
    log: LogConfig = LogConfig()
    subscribers: Annotated[tuple[SubscriberTable, ...], Field(strict=False)] = ()
    topics: Annotated[tuple[TopicTable, ...], Field(strict=False)] = ()
    sources: Annotated[tuple[SourceTable, ...], Field(strict=False)] = ()
    fetch: FetchConfig = FetchConfig()
    source: Path | None = Field(None, exclude=True)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, value: tuple[SourceTable, ...]) -> tuple[SourceTable, ...]:
        names = [source.name for source in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"source names must be unique: {', '.join(twice)} given twice")
        return value

    def source_named(self, name: str) -> SourceTable | None:
        return next((s for s in self.sources if s.name == name), None)


_PATH_KEYS = (
    ("storage", "database"),
    ("inbox", "dir"),
    ("delivery", "maildir"),
    ("feeds", "dir"),
    ("fetch", "archive_dir"),
)


def discover(explicit: Path | None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """The config file to read, following the documented lookup order."""
    if explicit is not None:
        return explicit
    if environ.get(ENV_VAR):
        return Path(environ[ENV_VAR])
    local = Path(DEFAULT_FILE)
    return local if local.is_file() else None


def load(explicit: Path | None = None, environ: Mapping[str, str] = os.environ) -> Config:
    """Load and validate the configuration; raise ConfigError naming file and key."""
    path = discover(explicit, environ)
    if path is None:
        return _resolve_paths(Config(), Path.cwd())
    data = _read_toml(path)
    return from_mapping(data, source=path)


def from_mapping(data: Mapping[str, Any], *, source: Path | None = None) -> Config:
    """Validate already-parsed TOML; relative paths are resolved against ``source``'s folder."""
    label = str(source) if source else "<config>"
    try:
        config = Config.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(_describe(label, err)) from None
    base = source.resolve().parent if source else Path.cwd()
    return _resolve_paths(config, base).model_copy(update={"source": source})


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found", "check --config or $DIGEST_CONFIG"
        ) from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file: {err.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


def _resolve_paths(config: Config, base: Path) -> Config:
    updates: dict[str, Section] = {}
    for section_name, key in _PATH_KEYS:
        section = updates.get(section_name) or getattr(config, section_name)
        value: Path = getattr(section, key)
        if not value.is_absolute():
            updates[section_name] = section.model_copy(update={key: base / value})
    return config.model_copy(update=updates)


def _describe(label: str, err: ValidationError) -> str:
    """One line per problem: file, [section] key, what is allowed and what was given."""
    lines = []
    for problem in err.errors():
        location = [str(part) for part in problem["loc"]]
        where = _where(problem["loc"])
        if problem["type"] == "extra_forbidden":
            allowed = _allowed_keys(location[:-1])
            lines.append(f"{label}: {where}: unknown key; allowed keys: {', '.join(allowed)}")
        else:
            got = problem.get("input")
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"{label}: {where}: {_lower_first(message)} (got {got!r})")
    return "\n".join(lines)


def _where(loc: tuple[int | str, ...]) -> str:
    """``[smtp] port`` for a table key, ``[[subscribers]] #2 email`` for an array item."""
    if len(loc) == 1:
        return str(loc[0])
    if len(loc) > 2 and isinstance(loc[1], int):
        return f"[[{loc[0]}]] #{loc[1] + 1} {'.'.join(map(str, loc[2:]))}"
    return f"[{loc[0]}] {'.'.join(map(str, loc[1:]))}"


def _allowed_keys(location: list[str]) -> list[str]:
    model: type[BaseModel] = Config
    for part in location:
        if part.isdigit():
            continue
        annotation = model.model_fields[part].annotation
        args = getattr(annotation, "__args__", ())
        annotation = args[0] if args else annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return sorted(
        (field.alias or name) for name, field in model.model_fields.items() if not field.exclude
    )


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
