"""``digest match`` and ``digest explain``: what a filter picks, and why."""

from collections.abc import Iterable

import click

from digest import explain, match, subscribers
from digest.cli.app import (
    App,
    echo_byline,
    emit_json,
    emit_json_array,
    errors,
    now,
    parse_since,
)
from digest.errors import UsageError


@click.command("match")
@click.option("--query", metavar="QUERY", help="Backtest this filter over the stored papers.")
@click.option("--subscriber", "email", metavar="EMAIL", help="Show this subscriber's next digest.")
@click.option("--since", metavar="WHEN", help="With --query: only papers first seen since then.")
@click.option("--by-day", is_flag=True, help="With --query: papers per ingest day instead.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def match_command(
    app: App, query: str | None, email: str | None, since: str | None, by_day: bool, as_json: bool
) -> None:
    """Run a filter over the stored papers, or show what a subscriber would get next.

    Order: trending first (seen in more listings, at better positions), then
    relevance. JSON: an array of {id, title, matched, score, ...}.
    """
    with errors(app):
        if (query is None) == (email is None):
            raise UsageError("give --query QUERY or --subscriber EMAIL (one of the two)")
        if query is not None:
            from digest.backtest import Streamed

            found = Streamed(app.store, query, since=parse_since(since, now()))
            if by_day:
                _print_by_day(found.by_day(), as_json)
                return
            _print_matches(found.ranked(), as_json)
            return
        assert email is not None
        subscriber = subscribers.get(app.store, email)
        upcoming = match.pending(app.store, subscriber, app.config.digest, now(), whole=False)
    _print_matches(upcoming.capped, as_json)
    if not as_json:
        click.echo(
            f"window: {upcoming.window}; {upcoming.more} more match beyond the cap", err=True
        )


def _print_matches(found: Iterable[match.Match], as_json: bool) -> None:
    """Each match printed as it comes: a backtest may list a whole store."""
    if as_json:
        emit_json_array(m.as_json() for m in found)
        return
    count = 0
    for m in found:
        click.echo(f"{m.paper.id}  seen {m.paper.times_seen}×  {m.paper.title}")
        echo_byline(m.paper.meta.authors)
        click.echo(f"    matched: {', '.join(m.matched)}")
        count += 1
    click.echo(f"{count} papers", err=True)


def _print_by_day(days: list[tuple[str, int]], as_json: bool) -> None:
    if as_json:
        emit_json([{"day": day, "papers": count} for day, count in days])
        return
    for day, count in days:
        click.echo(f"{day}  {count:>4}  {'#' * min(count, 60)}")


@click.command("explain")
@click.argument("email")
@click.argument("paper")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def explain_command(app: App, email: str, paper: str, as_json: bool) -> None:
    """Say why PAPER (id or title) is or is not in EMAIL's next digest."""
    with errors(app):
        subscriber = subscribers.get(app.store, email)
        found = app.store.paper(paper)
        if found is None:
            raise UsageError(f"no paper with id or title {paper!r}", "see `digest papers --search`")
        verdict = explain.explain(app.store, subscriber, found, app.config.digest, now())
    if as_json:
        why = verdict.explanation
        emit_json(
            {
                "included": verdict.included,
                "reasons": verdict.reasons,
                "matched": why.matched,
                "missing": why.missing,
                "excluded_by": why.excluded_by,
            }
        )
        return
    head = "IN" if verdict.included else "NOT in"
    click.echo(f"{found.title}\n{head} the next digest of {subscriber.email}:")
    for reason in verdict.reasons:
        click.echo(f"  - {reason}")
