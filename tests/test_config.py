"""Config: lookup order, defaults, relative paths, and errors that name file, key and what is allowed."""

from pathlib import Path

import pytest

from digest import config
from digest.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "digest.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_config_loads_and_states_every_default() -> None:
    example = config.load(ROOT / "config.example.toml", environ={})
    defaults = config.from_mapping({}, source=ROOT / "config.example.toml")
    assert example.model_copy(update={"subscribers": (), "topics": (), "sources": ()}) == defaults
    assert [(s.name, s.enabled) for s in example.sources] == [("hf", False)]
    assert [(t.name, t.feed_slug) for t in example.topics] == [("Diffusion models", "diffusion")]
    assert [s.email for s in example.subscribers] == ["ada@example.org", "grace@example.org"]


def test_the_example_config_comments_every_key() -> None:
    lines = (ROOT / "config.example.toml").read_text().splitlines()
    for number, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[number - 1].startswith("#"), f"no comment above: {line}"


def test_the_keys_read_by_acceptance_checks_are_accepted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[storage]
database = "var/digest.db"
[inbox]
dir = "var/inbox"
[delivery]
backend = "maildir"
from = "Paper Digest <digest@example.org>"
maildir = "var/mail"
[smtp]
host = "127.0.0.1"
port = 25
security = "none"
username = ""
password_env = "DIGEST_SMTP_PASSWORD"
[feeds]
dir = "var/feeds"
[web]
base_url = "http://127.0.0.1:8080"
""",
    )
    loaded = config.load(path, environ={})
    assert loaded.delivery.from_ == "Paper Digest <digest@example.org>"
    assert loaded.storage.database == tmp_path / "var" / "digest.db"


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[inbox]\ndir = "drop"\n[feeds]\ndir = "/srv/feeds"\n')
    loaded = config.load(path, environ={})
    assert loaded.inbox.dir == tmp_path / "drop"
    assert loaded.feeds.dir == Path("/srv/feeds")


def test_without_a_file_the_data_lives_under_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = config.load(None, environ={})
    assert loaded.source is None
    assert loaded.storage.database == tmp_path / "var" / "digest.db"


def test_lookup_order_flag_then_environment_then_local_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    local = write(tmp_path, "")
    local.rename(tmp_path / "config.toml")
    assert config.discover(None, environ={}) == Path("config.toml")
    assert config.discover(None, environ={"DIGEST_CONFIG": "/etc/digest/config.toml"}) == Path(
        "/etc/digest/config.toml"
    )
    assert config.discover(Path("x.toml"), environ={"DIGEST_CONFIG": "/e.toml"}) == Path("x.toml")


def test_the_config_is_frozen() -> None:
    loaded = config.from_mapping({})
    with pytest.raises(ValueError, match="frozen"):
        loaded.smtp.port = 2525  # type: ignore[misc]


BAD = {
    "unknown section": (
        "[mail]\nhost = 'x'\n",
        "mail: unknown key; allowed keys: delivery, digest, feeds",
    ),
    "unknown key": (
        "[smtp]\nhots = 'x'\n",
        "[smtp] hots: unknown key; allowed keys: concurrency, host,",
    ),
    "wrong type": (
        "[smtp]\nport = '25'\n",
        "[smtp] port: input should be a valid integer (got '25')",
    ),
    "out of range": (
        "[smtp]\nport = 70000\n",
        "[smtp] port: input should be less than or equal to 65535",
    ),
    "not an allowed word": (
        "[smtp]\nsecurity = 'ssl'\n",
        "[smtp] security: input should be 'starttls', 'tls' or 'none'",
    ),
    "bad sender": ("[delivery]\nfrom = 'nobody'\n", "[delivery] from: must be an address"),
    "header injection in sender": (
        '[delivery]\nfrom = "a@b.org\\r\\nBcc: x@y.org"\n',
        "[delivery] from: must be an address",
    ),
    "paper url without title": (
        "[digest]\npaper_url = 'https://x.org'\n",
        "[digest] paper_url: must contain {title}",
    ),
    "paper url not http": (
        "[digest]\npaper_url = 'javascript:alert({title})'\n",
        "[digest] paper_url: must start with http:// or https://",
    ),
    "base url not http": (
        "[web]\nbase_url = 'ftp://x'\n",
        "[web] base_url: must start with http:// or https://",
    ),
    "not TOML": ("[smtp\n", "not valid TOML"),
}


@pytest.mark.parametrize(("text", "message"), BAD.values(), ids=BAD.keys())
def test_a_bad_config_names_the_file_the_key_and_what_is_allowed(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ={})
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(tmp_path / "nope.toml", environ={})


def test_secrets_come_from_the_environment_named_in_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded = config.from_mapping({"smtp": {"password_env": "MY_SMTP_PW"}})
    monkeypatch.delenv("MY_SMTP_PW", raising=False)
    assert loaded.smtp.password() is None
    monkeypatch.setenv("MY_SMTP_PW", "s3cret")
    assert loaded.smtp.password() == "s3cret"


@pytest.mark.parametrize(
    ("name", "slug"),
    [("Diffusion & Video", "diffusion-video"), ("Łódź  NLP!", "odz-nlp"), ("§§", "topic")],
)
def test_a_topic_slug_is_made_from_its_name(name: str, slug: str) -> None:
    loaded = config.from_mapping({"topics": [{"name": name, "filter": "x"}]})
    assert loaded.topics[0].feed_slug == slug
