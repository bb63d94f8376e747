"""Subscribers: the CLI commands, validation, CSV import/export and config sync."""

from pathlib import Path
from typing import Any

import pytest

from digest.store import Store

from .conftest import RunCli


def add(run_cli: RunCli, email: str = "ada@example.org", query: str = "diffusion", *extra: str):  # type: ignore[no-untyped-def]
    return run_cli("subscribers", "add", email, "--filter", query, *extra)


def listed(run_cli: RunCli) -> list[dict[str, str]]:
    result = run_cli("subscribers", "list", "--json")
    assert result.exit_code == 0
    return result.json()  # type: ignore[no-any-return]


def test_an_added_subscriber_is_active_with_what_they_asked_for(run_cli: RunCli) -> None:
    result = add(
        run_cli,
        "Ada@Example.ORG",
        "diffusion -video",
        "--name",
        "Ada L",
        "--frequency",
        "weekly",
        "--format",
        "text",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert result.json() == {
        "email": "Ada@example.org",
        "name": "Ada L",
        "filter": "diffusion -video",
        "frequency": "weekly",
        "format": "text",
        "status": "active",
        "source": "cli",
        "settings_owner": "operator",
        "created_at": result.json()["created_at"],
    }
    assert [s["email"] for s in listed(run_cli)] == ["Ada@example.org"]


def test_each_subscriber_gets_a_random_secret_of_at_least_128_bits(
    run_cli: RunCli, config_file: Path
) -> None:
    add(run_cli, "a@example.org")
    add(run_cli, "b@example.org")
    store = Store(config_file.parent / "var" / "digest.db")
    secrets = [s.secret for s in store.subscribers()]
    store.close()
    assert len(set(secrets)) == 2
    assert all(len(s) * 6 >= 128 for s in secrets)
    assert not any(s in add(run_cli, "c@example.org", "x", "--json").stdout for s in secrets)


@pytest.mark.parametrize(
    "email", ["not-an-address", "a@", "a b@example.org", "ada@localhost", "a@b.org\r\nBcc: x@y.org"]
)
def test_a_bad_email_is_refused_and_nothing_stored(run_cli: RunCli, email: str) -> None:
    result = add(run_cli, email)
    assert result.exit_code == 2
    assert "is not a valid email address" in result.stderr
    assert listed(run_cli) == []


def test_a_duplicate_address_is_a_clear_error_whatever_its_case(run_cli: RunCli) -> None:
    add(run_cli, "ada@example.org")
    result = add(run_cli, "ADA@example.org", "agents")
    assert result.exit_code == 2
    assert "error: ADA@example.org is already subscribed" in result.stderr
    assert [s["filter"] for s in listed(run_cli)] == ["diffusion"]


def test_a_bad_filter_shows_a_caret_and_stores_nothing(run_cli: RunCli) -> None:
    result = add(run_cli, "ada@example.org", "diffusion AND")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: bad filter at column")
    assert lines[1] == "  diffusion AND"
    assert lines[2].index("^") == lines[1].index("AND")
    assert listed(run_cli) == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("diffusion author:lecun -category:cs.CV", None),
        (
            "category:("
            + " OR ".join(f"cs.X{i}" for i in range(13))
            + ") author:("
            + " ".join(f"a{i}" for i in range(12))
            + ")",
            "error: bad filter at column 1: a filter can have at most 24 terms (this one has 25)",
        ),
        (
            "title:(author:lecun)",
            "error: bad filter at column 8: author: cannot be used inside title:",
        ),
    ],
)
def test_author_and_category_terms_are_filter_terms_like_any_other(
    run_cli: RunCli, query: str, message: str | None
) -> None:
    result = add(run_cli, "ada@example.org", query)
    if message is None:
        assert result.exit_code == 0
        assert [s["filter"] for s in listed(run_cli)] == [query]
    else:
        assert result.exit_code == 2
        assert result.stderr.splitlines()[0] == message
        assert listed(run_cli) == []


def test_show_and_set_change_a_subscriber(run_cli: RunCli) -> None:
    add(run_cli)
    result = run_cli(
        "subscribers",
        "set",
        "ada@example.org",
        "--filter",
        "agents OR robots",
        "--status",
        "paused",
        "--json",
    )
    assert result.exit_code == 0
    shown = run_cli("subscribers", "show", "ada@example.org", "--json").json()
    assert (shown["filter"], shown["status"]) == ("agents OR robots", "paused")


def test_set_validates_like_add(run_cli: RunCli) -> None:
    add(run_cli)
    result = run_cli("subscribers", "set", "ada@example.org", "--filter", "(unclosed")
    assert result.exit_code == 2
    assert "unclosed" in result.stderr
    assert listed(run_cli)[0]["filter"] == "diffusion"
    assert run_cli("subscribers", "set", "ada@example.org").exit_code == 2


def test_show_of_an_unknown_subscriber_says_so(run_cli: RunCli) -> None:
    result = run_cli("subscribers", "show", "nobody@example.org")
    assert result.exit_code == 2
    assert "no subscriber nobody@example.org" in result.stderr


def test_remove_keeps_history_and_purge_deletes(run_cli: RunCli) -> None:
    add(run_cli, "a@example.org")
    add(run_cli, "b@example.org")
    assert run_cli("subscribers", "remove", "a@example.org").exit_code == 0
    assert run_cli("subscribers", "remove", "b@example.org", "--purge").exit_code == 0
    assert [(s["email"], s["status"]) for s in listed(run_cli)] == [
        ("a@example.org", "unsubscribed")
    ]


def write_csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "people.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_import_adds_every_row(run_cli: RunCli, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        'email,filter,name,frequency,format\na@example.org,diffusion,A,weekly,text\nb@example.org,"""large language"" -survey",,,\n',
    )
    result = run_cli("subscribers", "import", str(path))
    assert result.exit_code == 0, result.stderr
    people = listed(run_cli)
    assert [(s["email"], s["frequency"], s["format"], s["filter"]) for s in people] == [
        ("a@example.org", "weekly", "text", "diffusion"),
        ("b@example.org", "daily", "html", '"large language" -survey'),
    ]
    assert {s["source"] for s in people} == {"import"}


def test_import_with_bad_rows_imports_nothing_and_lists_each_bad_line(
    run_cli: RunCli, tmp_path: Path
) -> None:
    add(run_cli, "taken@example.org")
    path = write_csv(
        tmp_path,
        "email,filter\n"
        "good@example.org,diffusion\n"
        "not-an-email,agents\n"
        "ok@example.org,-video\n"
        "taken@example.org,robots\n"
        "good@example.org,again\n",
    )
    result = run_cli("subscribers", "import", str(path))
    assert result.exit_code == 2
    for line, reason in [
        (3, "not a valid email address"),
        (4, "at least one term"),
        (5, "already subscribed"),
        (6, "also on line 2"),
    ]:
        assert f"{path}:{line}: " in result.stderr
        assert reason in result.stderr
    assert f"{path}:2:" not in result.stderr
    assert [s["email"] for s in listed(run_cli)] == ["taken@example.org"]


def test_import_refuses_a_wrong_header(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("subscribers", "import", str(write_csv(tmp_path, "mail,query\na@b.org,x\n")))
    assert result.exit_code == 2
    assert "the header must be email,filter" in result.stderr


def test_export_writes_what_import_reads(run_cli: RunCli, tmp_path: Path) -> None:
    add(run_cli, "a@example.org", 'title:"video generation" OR sora', "--name", "A, the first")
    out = tmp_path / "out.csv"
    assert run_cli("subscribers", "export", str(out)).exit_code == 0
    run_cli("subscribers", "remove", "a@example.org", "--purge")
    assert run_cli("subscribers", "import", str(out)).exit_code == 0
    [person] = listed(run_cli)
    assert (person["name"], person["filter"]) == (
        "A, the first",
        'title:"video generation" OR sora',
    )
    assert run_cli("subscribers", "export").stdout == out.read_text()


def config_with(config_file: Path, *people: tuple[str, str]) -> None:
    base = config_file.read_text().split("[[subscribers]]")[0]
    tables = "".join(
        f"\n[[subscribers]]\nemail = \"{email}\"\nfilter = '{query}'\n" for email, query in people
    )
    config_file.write_text(base + tables)


def synced(run_cli: RunCli) -> list[dict[str, Any]]:
    result = run_cli("subscribers", "sync")
    assert result.exit_code == 0, result.stderr
    return listed(run_cli)


def test_config_declared_subscribers_appear_and_disappear_on_sync(
    run_cli: RunCli, config_file: Path
) -> None:
    config_with(config_file, ("a@example.org", "diffusion"), ("b@example.org", '"language model"'))
    assert listed(run_cli) == [], "a read-only command does not sync"
    assert [(s["email"], s["status"], s["source"]) for s in synced(run_cli)] == [
        ("a@example.org", "active", "config"),
        ("b@example.org", "active", "config"),
    ]
    config_with(config_file, ("a@example.org", "diffusion -video"))
    assert [(s["email"], s["status"], s["filter"]) for s in synced(run_cli)] == [
        ("a@example.org", "active", "diffusion -video"),
        ("b@example.org", "unsubscribed", '"language model"'),
    ]
    config_with(
        config_file, ("a@example.org", "diffusion -video"), ("b@example.org", '"language model"')
    )
    assert {s["status"] for s in synced(run_cli)} == {"active"}, "the config undoes its own retire"


def test_a_bad_filter_in_the_config_names_the_file_and_the_table(
    run_cli: RunCli, config_file: Path
) -> None:
    config_with(config_file, ("a@example.org", "diffusion"), ("b@example.org", "NEAR(a b)"))
    result = run_cli("subscribers", "sync")
    assert result.exit_code == 2
    assert (
        f"error: {config_file}: [[subscribers]] #2 filter: bad filter at column 1" in result.stderr
    )
    assert listed(run_cli) == [], "nothing is synced when any table is bad"


def test_show_json_gives_the_subscriber_links(run_cli: RunCli) -> None:
    add(run_cli)
    shown = run_cli("subscribers", "show", "ada@example.org", "--json").json()
    for key, path in [
        ("feed_url", "/feeds/"),
        ("manage_url", "/manage/"),
        ("unsubscribe_url", "/unsubscribe/"),
    ]:
        assert shown[key].startswith(f"http://127.0.0.1:8080{path}1-")
    assert shown["feed_url"].endswith(".atom")
    assert len({shown["feed_url"], shown["manage_url"], shown["unsubscribe_url"]}) == 3


def test_subscribers_read_at_once_share_their_repeated_values(store: Store) -> None:
    """100,000 subscribers hold a few filters, statuses and formats: one object each."""
    for n in range(3):
        store.insert_subscriber(
            {
                "email": f"s{n}@example.org",
                "filter": "diffusion OR video",
                "secret": f"k{n}",
                "created_at": "2026-12-01T07:00:00Z",
                "updated_at": "2026-12-01T07:00:00Z",
            }
        )
    first, *others = store.subscribers(["active"])
    assert all(o.filter is first.filter and o.status is first.status for o in others)
    assert len({id(s.secret) for s in [first, *others]}) == 3  # and their own ones their own
