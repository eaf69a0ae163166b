"""chatd.ini parsed into frozen dataclasses, one per section.

Every option has a default here, so ``twistd chatd`` with no file runs. Each
field's metadata says how to read it from text and what range is allowed; a
bad value or an unknown key raises one ``ConfigError`` naming ``section.key``.
"""

import configparser
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration problem, worded as ``section.key: what is wrong``."""


def _option(
    default: Any,
    minimum: float | None = None,
    choices: tuple = (),
    maximum: float | None = None,
) -> Any:
    """Declare an option with its default, optional bounds and choices."""
    metadata = {"minimum": minimum, "maximum": maximum, "choices": choices}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ServerConfig:
    """[server]: where chatd listens and how it treats connections."""

    endpoint: str = "tcp:8765"
    allowed_origins: tuple[str, ...] = ()
    open_handshake_timeout: float = _option(10.0, minimum=0)
    auto_ping_interval: float = _option(30.0, minimum=0)
    auto_ping_timeout: float = _option(15.0, minimum=0)
    close_handshake_timeout: float = _option(5.0, minimum=0)
    auth_timeout: float = _option(30.0, minimum=0)
    max_buffered_bytes: int = _option(4 * 1024 * 1024, minimum=0)
    shutdown_timeout: float = _option(10.0, minimum=0)


@dataclass(frozen=True)
class DatabaseConfig:
    """[database]: which store backs chatd."""

    backend: str = _option("sqlite", choices=("sqlite", "postgres"))
    path: str = "chatd.sqlite3"
    dsn: str = "dbname=chatd host=127.0.0.1 user=postgres"
    pool_size: int = _option(4, minimum=1)
    timeout: float = _option(10.0, minimum=0)
    reconnect_max_delay: float = _option(5.0, minimum=0.1)


@dataclass(frozen=True)
class SecurityConfig:
    """[security]: password hashing, sessions and the limits of every input."""

    bcrypt_cost: int = _option(12, minimum=4, maximum=31)
    bcrypt_threads: int = _option(0, minimum=0)
    session_ttl: float = _option(30 * 24 * 3600.0, minimum=1)
    max_sessions_per_user: int = _option(10, minimum=1)
    max_frame_bytes: int = _option(64 * 1024, minimum=256)
    username_min_length: int = _option(3, minimum=1)
    username_max_length: int = _option(32, minimum=1)
    password_min_bytes: int = _option(8, minimum=1)
    password_max_bytes: int = _option(1024, minimum=1)
    nickname_max_length: int = _option(64, minimum=1)
    content_max_length: int = _option(4000, minimum=1)
    group_name_max_length: int = _option(64, minimum=1)
    max_group_members: int = _option(500, minimum=2)
    rate_limit: float = _option(20.0, minimum=0)
    rate_burst: int = _option(40, minimum=1)
    bcrypt_queue: int = _option(64, minimum=0)
    login_failures_allowed: int = _option(5, minimum=1)
    login_delay: float = _option(1.0, minimum=0.001)
    login_delay_max: float = _option(60.0, minimum=0.001)
    login_failure_window: float = _option(900.0, minimum=1)


@dataclass(frozen=True)
class MessagesConfig:
    """[messages]: backlog batches, history pages and the message writer."""

    backlog_batch: int = _option(200, minimum=1)
    history_limit: int = _option(50, minimum=1)
    history_max_limit: int = _option(200, minimum=1)
    write_batch: int = _option(500, minimum=1)


@dataclass(frozen=True)
class PresenceConfig:
    """[presence]: who sees the online list, how big it is, how often it moves."""

    online_users: str = _option("all", choices=("all", "friends", "off"))
    online_users_interval: float = _option(2.0, minimum=0.01)
    online_users_limit: int = _option(200, minimum=0)


@dataclass(frozen=True)
class Config:
    """The whole configuration; ``Config()`` is every default."""

    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    messages: MessagesConfig = field(default_factory=MessagesConfig)
    presence: PresenceConfig = field(default_factory=PresenceConfig)


_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True}
_BOOLEANS.update({"false": False, "no": False, "off": False, "0": False})


def _parse_value(kind: type, text: str) -> Any:
    """Turn the text of one option into a value of the field's type."""
    if kind is bool:
        try:
            return _BOOLEANS[text.lower()]
        except KeyError:
            raise ValueError(f"expected true or false, got {text!r}") from None
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    if kind == tuple[str, ...]:
        return tuple(part for part in text.replace(",", " ").split() if part)
    return text


def _read_section(section: str, defaults: Any, items: dict[str, str]) -> Any:
    """Build one section's dataclass from its items, checking each value."""
    known = {f.name: f for f in fields(defaults)}
    values = {}
    for key, text in items.items():
        name = f"{section}.{key}"
        option = known.get(key)
        if option is None:
            raise ConfigError(f"{name}: unknown option")

        try:
            value = _parse_value(option.type, text.strip())
        except ValueError as error:
            raise ConfigError(f"{name}: {error}") from None

        minimum = option.metadata.get("minimum")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name}: must be at least {minimum}, got {value}")
        maximum = option.metadata.get("maximum")
        if maximum is not None and value > maximum:
            raise ConfigError(f"{name}: must be at most {maximum}, got {value}")
        choices = option.metadata.get("choices")
        if choices and value not in choices:
            allowed = ", ".join(choices)
            raise ConfigError(f"{name}: must be one of {allowed}, got {value!r}")
        values[key] = value
    return replace(defaults, **values)


def _check_consistency(config: Config) -> None:
    """Reject combinations of values that cannot work together."""
    security = config.security
    if security.username_min_length > security.username_max_length:
        raise ConfigError("security.username_min_length: exceeds username_max_length")
    if security.password_min_bytes > security.password_max_bytes:
        raise ConfigError("security.password_min_bytes: exceeds password_max_bytes")
    if config.messages.history_limit > config.messages.history_max_limit:
        raise ConfigError("messages.history_limit: exceeds history_max_limit")


def parse_config(text: str, source: str = "<string>") -> Config:
    """Parse the text of a chatd.ini.

    Raises:
        ConfigError: for a syntax error, unknown section or key, or bad value.
    """
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=None)
    parser.optionxform = str
    try:
        parser.read_string(text, source=source)
    except configparser.Error as error:
        first_line = str(error).splitlines()[0]
        raise ConfigError(f"{source}: {first_line}") from None

    config = Config()
    sections = {f.name: f for f in fields(Config)}
    for section in parser.sections():
        if section not in sections:
            raise ConfigError(f"{section}: unknown section")
        current = getattr(config, section)
        updated = _read_section(section, current, dict(parser.items(section)))
        config = replace(config, **{section: updated})
    _check_consistency(config)
    return config


def load_config(path: str | None) -> Config:
    """Read chatd.ini from ``path``, or return the defaults when it is None."""
    if path is None:
        return Config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    return parse_config(text, source=path)
