"""The subscriber lifecycle: the transition table, who owns settings, the config sync, and
the promise that an unsubscribe sticks and that reading never writes."""

import hashlib
import json
import re
import signal
import subprocess
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest import config as config_module
from digest import declared, lifecycle, links, subscribers
from digest.declared import SyncStep
from digest.errors import ConfigError, QueryError, UsageError
from digest.lifecycle import ACTIONS, CHANNELS, Refused
from digest.models import STATUSES, Status, Subscriber
from digest.store import Store
from tests.conftest import NOW, RunCli
from tests.smtp_servers import Server
from tests.test_scheduler import DIGEST, Running, free_port, service_config

# (state, action, channel) -> the new state; every combination not listed is refused.
ALLOWED: dict[tuple[Status | None, str, str], Status] = {
    (None, "create", "subscriber"): "pending",
    (None, "create", "operator"): "active",
    (None, "create", "config"): "active",
    ("pending", "confirm", "subscriber"): "active",
    ("unsubscribed", "confirm", "subscriber"): "active",
    ("bouncing", "confirm", "subscriber"): "active",
    ("active", "confirm", "subscriber"): "active",
    ("paused", "confirm", "subscriber"): "paused",
    ("active", "pause", "subscriber"): "paused",
    ("paused", "pause", "subscriber"): "paused",
    ("active", "pause", "operator"): "paused",
    ("paused", "pause", "operator"): "paused",
    ("paused", "resume", "subscriber"): "active",
    ("active", "resume", "subscriber"): "active",
    ("paused", "resume", "operator"): "active",
    ("active", "resume", "operator"): "active",
    ("bouncing", "resume", "operator"): "active",
    ("unsubscribed", "restore", "config"): "active",
    ("active", "bounce", "delivery"): "bouncing",
    ("bouncing", "bounce", "delivery"): "bouncing",
    **{
        (state, "unsubscribe", channel): "unsubscribed"
        for state in STATUSES
        for channel in ("subscriber", "operator", "config")
    },
}
EVERY_CHANGE = [
    (state, action, channel)
    for state in (None, *STATUSES)
    for action in ACTIONS
    for channel in CHANNELS
]


@pytest.mark.parametrize(("state", "action", "channel"), EVERY_CHANGE)
def test_the_transition_table(state: Status | None, action: str, channel: str) -> None:
    expected = ALLOWED.get((state, action, channel))
    if expected is None:
        with pytest.raises(Refused):
            lifecycle.next_status(state, action, channel)  # type: ignore[arg-type]
    else:
        assert lifecycle.next_status(state, action, channel) == expected  # type: ignore[arg-type]


def test_nothing_but_the_subscriber_brings_an_unsubscribed_address_back() -> None:
    comebacks = {
        (action, channel)
        for (state, action, channel), new in ALLOWED.items()
        if state == "unsubscribed" and new != "unsubscribed"
    }
    assert comebacks == {("confirm", "subscriber"), ("restore", "config")}


def add(store: Store, email: str = "ada@example.org", query: str = "diffusion") -> Subscriber:
    return lifecycle.add(store, subscribers.Wanted(email, query), "operator", NOW)


def test_every_change_is_in_the_history_with_its_channel(store: Store) -> None:
    person = add(store)
    person = lifecycle.change_status(store, person, "pause", "subscriber", NOW)
    person = lifecycle.change_status(store, person, "pause", "subscriber", NOW)  # no change
    person = lifecycle.change_settings(store, person, {"filter": "video"}, "subscriber", NOW)
    lifecycle.unsubscribe(store, person, NOW + timedelta(hours=1))
    history = [
        (e["action"], e["channel"], e["from_status"], e["to_status"], e["detail"])
        for e in store.events(person.id)
    ]
    assert history == [
        ("create", "operator", None, "active", ""),
        ("pause", "subscriber", "active", "paused", ""),
        ("settings", "subscriber", "paused", "paused", "filter"),
        ("unsubscribe", "subscriber", "paused", "unsubscribed", ""),
    ]


def test_the_operator_cannot_set_an_unsubscribed_address_active(store: Store) -> None:
    lifecycle.remove(store, add(store).email, NOW)
    with pytest.raises(Refused, match="only they can subscribe again"):
        lifecycle.set_by_operator(store, "ada@example.org", {"status": "active"}, NOW)
    assert subscribers.get(store, "ada@example.org").status == "unsubscribed"


def test_the_operator_may_resume_a_bouncing_address(store: Store) -> None:
    person = add(store)
    with store.write():
        store.update_subscriber(person.id, {"status": "bouncing", "bounces": 3})
    resumed = lifecycle.set_by_operator(store, person.email, {"status": "active"}, NOW)
    assert (resumed.status, resumed.bounces) == ("active", 0)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"filter": "x " * 251}, QueryError),
        ({"filter": " OR ".join(f"w{i}" for i in range(25))}, QueryError),
        ({"name": "n" * 101}, UsageError),
        ({"name": "a\r\nBcc: x@y.org"}, UsageError),
        ({"secret": "mine"}, UsageError),
    ],
)
def test_what_a_subscriber_may_store_is_bounded_by_the_core(
    store: Store, changes: dict[str, str], error: type[Exception]
) -> None:
    person = add(store)
    with pytest.raises(error):
        lifecycle.change_settings(store, person, changes, "subscriber", NOW)
    assert subscribers.get(store, person.email) == person


def test_the_limits_allow_a_filter_of_24_terms_in_500_characters(store: Store) -> None:
    query = " OR ".join(f"term{i:02d}" for i in range(24))
    assert len(query) <= subscribers.MAX_FILTER_CHARS
    person = lifecycle.change_settings(store, add(store), {"filter": query}, "subscriber", NOW)
    assert person.filter == query


# the config sync -----------------------------------------------------------------------------


def declare(store: Store, *people: tuple[str, str], dry_run: bool = False) -> list[SyncStep]:
    wanted = [subscribers.Wanted(email, query) for email, query in people]
    return declared.sync_config(store, wanted, "config.toml", NOW, dry_run=dry_run)


def test_the_sync_never_brings_back_someone_who_unsubscribed(store: Store) -> None:
    declare(store, ("ada@example.org", "diffusion"))
    lifecycle.unsubscribe(store, subscribers.get(store, "ada@example.org"), NOW)
    planned = declare(store, ("ada@example.org", "diffusion"), dry_run=True)
    assert [(s.what, s.email) for s in planned] == [("keep-unsubscribed", "ada@example.org")]
    declare(store, ("ada@example.org", "diffusion"))
    assert subscribers.get(store, "ada@example.org").status == "unsubscribed"


def test_the_suggestions_switch_is_a_setting_with_its_line_in_the_history(store: Store) -> None:
    person = add(store)
    assert person.suggestions
    person = lifecycle.change_settings(store, person, {}, "subscriber", NOW, suggestions=False)
    assert not person.suggestions
    again = lifecycle.change_settings(store, person, {}, "subscriber", NOW, suggestions=False)
    assert again == person  # no change: no line
    person = lifecycle.change_settings(store, person, {"filter": "video"}, "subscriber", NOW)
    assert not person.suggestions  # left as it was when not given
    details = [e["detail"] for e in store.events(person.id) if e["action"] == "settings"]
    assert details == ["suggestions", "filter"]


def test_the_sync_never_reverts_what_the_subscriber_changed(store: Store) -> None:
    declare(store, ("ada@example.org", "diffusion"))
    person = subscribers.get(store, "ada@example.org")
    lifecycle.change_settings(store, person, {"filter": "robots"}, "subscriber", NOW)
    [step] = declare(store, ("ada@example.org", "diffusion -video"))
    assert (step.what, step.detail) == ("keep-own-settings", "they changed filter themselves")
    assert subscribers.get(store, "ada@example.org").filter == "robots"


def test_the_operator_changes_a_config_declared_subscriber_in_the_config(store: Store) -> None:
    declare(store, ("ada@example.org", "diffusion"))
    with pytest.raises(Refused, match="declared in the config"):
        lifecycle.set_by_operator(store, "ada@example.org", {"filter": "robots"}, NOW)
    paused = lifecycle.set_by_operator(store, "ada@example.org", {"status": "paused"}, NOW)
    declare(store, ("ada@example.org", "diffusion"))
    assert subscribers.get(store, paused.email).status == "paused", "the sync leaves state alone"


def test_a_dry_run_changes_nothing(store: Store) -> None:
    declare(store, ("a@example.org", "diffusion"))
    steps = declare(store, ("b@example.org", "robots"), dry_run=True)
    assert sorted((s.what, s.email) for s in steps) == [
        ("add", "b@example.org"),
        ("retire", "a@example.org"),
    ]
    assert [(s.email, s.status) for s in store.subscribers()] == [("a@example.org", "active")]


# reading never writes ------------------------------------------------------------------------

READ_ONLY = [
    ["status"],
    ["papers"],
    ["subscribers", "list"],
    ["subscribers", "show", "ada@example.org"],
    ["subscribers", "export"],
    ["match", "--query", "diffusion"],
    ["match", "--subscriber", "ada@example.org"],
    ["explain", "ada@example.org", "x"],
    ["preview", "ada@example.org"],
    ["feeds", "build"],
]
WRITERS_THAT_DO_NOT_CREATE = [
    ["send"],
    ["subscribers", "sync"],
    ["subscribers", "add", "b@example.org", "--filter", "x"],
]


@pytest.mark.parametrize("args", READ_ONLY + WRITERS_THAT_DO_NOT_CREATE, ids=" ".join)
def test_a_missing_database_is_a_clear_error_and_no_file_is_made(
    run_cli: RunCli, config_file: Path, args: list[str]
) -> None:
    database = config_file.parent / "var" / "digest.db"
    for path in database.parent.glob("digest.db*"):
        path.unlink()
    result = run_cli(*args)
    assert result.exit_code == 2, result.stderr
    assert f"no database at {database} ([storage] database in {config_file})" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(database.parent.glob("digest.db*"))


def digest_files(folder: Path) -> str:
    main = folder / "var" / "digest.db"
    return hashlib.sha256(main.read_bytes()).hexdigest()


def test_commands_run_without_config_after_make_run_change_nothing(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make run`` keeps its data under ./var/, where the built-in defaults look too."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "declared.toml"
    config.write_text(
        '[storage]\ndatabase = "var/digest.db"\n'
        '[[subscribers]]\nemail = "ada@example.org"\nfilter = "diffusion"\n',
        encoding="utf-8",
    )
    assert run_cli("subscribers", "sync", config=config).exit_code == 0
    before = digest_files(tmp_path), run_cli("subscribers", "list", "--json", config=None).stdout
    for args in READ_ONLY:
        assert run_cli(*args, config=None).exit_code in (0, 1, 2)
    after = digest_files(tmp_path), run_cli("subscribers", "list", "--json", config=None).stdout
    assert after == before
    assert json.loads(after[1])[0]["status"] == "active"


def test_show_tells_why_someone_stopped_getting_mail(run_cli: RunCli) -> None:
    assert run_cli("subscribers", "add", "ada@example.org", "--filter", "x").exit_code == 0
    assert run_cli("subscribers", "set", "ada@example.org", "--status", "paused").exit_code == 0
    assert run_cli("subscribers", "remove", "ada@example.org").exit_code == 0
    shown = run_cli("subscribers", "show", "ada@example.org").stdout
    assert "pause by operator: active -> paused" in shown
    assert "unsubscribe by operator: paused -> unsubscribed" in shown
    history = run_cli("subscribers", "show", "ada@example.org", "--json").json()["history"]
    assert [e["action"] for e in history] == ["create", "pause", "unsubscribe"]


# the whole promise, against the real service -----------------------------------------------


def post(url: str, data: bytes) -> int:
    request = urllib.request.Request(url, data=data, method="POST")
    with urllib.request.urlopen(request, timeout=20) as answer:
        return int(answer.status)


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DIGEST, "--config", str(config), *args], capture_output=True, text=True, timeout=60
    )


def status_of(config: Path, email: str) -> str:
    shown = run(config, "subscribers", "show", email, "--json")
    assert shown.returncode == 0, shown.stderr
    return str(json.loads(shown.stdout)["status"])


@pytest.mark.slow
def test_a_one_click_unsubscribe_of_a_declared_subscriber_sticks(
    tmp_path: Path,
    sink: Server,
) -> None:
    config = service_config(tmp_path, sink.port, ["07:00"])
    port = free_port()
    with config.open("a", encoding="utf-8") as out:
        out.write(
            f'[web]\nenabled = true\nport = {port}\n[[subscribers]]\nemail = "bo@example.org"\n'
            'filter = "diffusion"\n'
        )
    service = Running(config, tmp_path / "n.sock")
    service.expect("READY=1")
    assert status_of(config, "bo@example.org") == "active", "declared ones appear at start"
    link = json.loads(run(config, "subscribers", "show", "bo@example.org", "--json").stdout)
    one_click = link["unsubscribe_url"].replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    assert post(one_click, b"List-Unsubscribe=One-Click") == 200
    assert status_of(config, "bo@example.org") == "unsubscribed"
    service.process.send_signal(signal.SIGHUP)
    service.expect("RELOADING=1")
    service.expect("READY=1")
    code, err = service.stop()
    assert code == 0, err
    assert re.search(r"config sync: keep-unsubscribed +bo@example\.org", err), err
    restarted = Running(config, tmp_path / "n2.sock")
    restarted.expect("READY=1")
    code, err = restarted.stop()
    assert code == 0, err
    for args in (["status"], ["subscribers", "list"], ["send"]):
        assert run(config, *args).returncode == 0
    assert status_of(config, "bo@example.org") == "unsubscribed"
    assert all("bo@example.org" not in m.rcpt_tos for m in sink.handler.received)


def test_built_in_defaults_sync_nobody_and_retire_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built-in defaults declare nobody, and must not retire what a real config declared."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIGEST_CONFIG", raising=False)
    store = Store(tmp_path / "digest.db")
    declared.sync_config(store, [subscribers.Wanted("a@example.org", "x")], "c.toml", NOW)
    defaults = config_module.load(None)
    assert defaults.source is None
    assert declared.sync_declared(store, defaults, datetime.now(UTC)) == []
    assert [s.status for s in store.subscribers()] == ["active"]
    store.close()


def test_a_stored_address_is_not_judged_again_when_settings_change(store: Store) -> None:
    """A row an older version stored (``josé@``) can still be paused and changed."""
    with store.write():
        store.insert_subscriber(
            {
                "email": "josé@example.org",
                "filter": "diffusion",
                "secret": "s" * 32,
                "created_at": "2026-11-01T00:00:00Z",
                "updated_at": "2026-11-01T00:00:00Z",
            }
        )
    person = subscribers.get(store, "josé@example.org")
    person = lifecycle.change_settings(store, person, {"filter": "robots"}, "subscriber", NOW)
    person = lifecycle.change_status(store, person, "pause", "subscriber", NOW)
    assert (person.filter, person.status) == ("robots", "paused")


def test_an_unsubscribe_of_ones_own_after_the_config_dropped_you_is_final(store: Store) -> None:
    declare(store, ("bo@example.org", "diffusion"), ("ada@example.org", "x"))
    declare(store, ("ada@example.org", "x"))  # the config drops bo
    lifecycle.unsubscribe(store, subscribers.get(store, "bo@example.org"), NOW)  # old digest
    steps = declare(store, ("bo@example.org", "diffusion"), ("ada@example.org", "x"))
    assert [(s.what, s.email) for s in steps] == [("keep-unsubscribed", "bo@example.org")]
    assert subscribers.get(store, "bo@example.org").status == "unsubscribed"


@pytest.mark.parametrize("state", ["paused", "bouncing"])
def test_the_config_restores_whom_it_dropped_to_the_state_they_were_in(
    store: Store, state: Status
) -> None:
    declare(store, ("bo@example.org", "diffusion"))
    person = subscribers.get(store, "bo@example.org")
    with store.write():
        store.update_subscriber(person.id, {"status": state})
    declare(store)  # dropped
    declare(store, ("bo@example.org", "diffusion"))  # declared again
    assert subscribers.get(store, "bo@example.org").status == state


def test_a_purge_of_an_address_the_config_still_declares_is_refused(store: Store) -> None:
    declare(store, ("bo@example.org", "diffusion"))
    lifecycle.unsubscribe(store, subscribers.get(store, "bo@example.org"), NOW)
    with pytest.raises(Refused, match="still declared"):
        lifecycle.remove(store, "bo@example.org", NOW, purge=True, declared=["bo@example.org"])
    assert subscribers.get(store, "bo@example.org").status == "unsubscribed"


def test_an_address_declared_twice_is_a_config_error_and_nothing_is_written(store: Store) -> None:
    with pytest.raises(ConfigError, match=r"#2: ANA@xn--bcher-kva.de is declared in #1 too"):
        declare(store, ("ana@bücher.de", "x"), ("ANA@xn--bcher-kva.de", "y"))
    assert store.subscribers() == []


def test_coming_back_after_an_unsubscribe_revokes_the_old_links(store: Store) -> None:
    person = lifecycle.add(store, subscribers.Wanted("bo@example.org", "x"), "subscriber", NOW)
    person = lifecycle.confirm(store, person.id, person.email, "x", NOW, NOW) or person
    before = links.token(person, "feed")
    lifecycle.unsubscribe(store, person, NOW + timedelta(hours=1))
    later = NOW + timedelta(days=2)
    back = lifecycle.confirm(store, person.id, person.email, "robots", later, later)
    assert back is not None
    assert back.status == "active"
    assert back.filter == "robots"
    assert not links.verify(back, before, "feed"), "a feed URL from before stays dead"


def test_a_link_asked_for_before_ones_own_unsubscribe_never_undoes_it(store: Store) -> None:
    """The config drops bo, bo asks for a link, then unsubscribes from an old digest:
    that link is older than the unsubscribe that is bo's own, so it confirms nothing."""
    declare(store, ("bo@example.org", "diffusion"), ("ada@example.org", "x"))
    declare(store, ("ada@example.org", "x"))  # the config drops bo at NOW
    person = subscribers.get(store, "bo@example.org")
    asked = NOW + timedelta(hours=1)
    lifecycle.unsubscribe(store, person, NOW + timedelta(hours=2))
    later = NOW + timedelta(hours=3)
    assert lifecycle.confirm(store, person.id, person.email, "x", asked, later) is None
    assert subscribers.get(store, "bo@example.org").status == "unsubscribed"
