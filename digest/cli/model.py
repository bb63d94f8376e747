"""``digest model rebuild`` and ``digest evaluate``: the readers' relevance models.

scikit-learn is imported by the commands when they run, never when the CLI starts.
"""

import click

from digest.cli.app import App, emit_json, errors, now

PROGRESS_EVERY = 500  # readers between two progress lines


@click.group("model")
def model_group() -> None:
    """The readers' relevance models (learned from their likes, on this machine)."""


@model_group.command("rebuild")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.pass_obj
def rebuild_command(app: App, as_json: bool) -> None:
    """Refit the corpus transform on every stored paper and retrain every reader now.

    The service does it daily at [model] train_at; delivery always uses the last
    model saved. Progress goes to standard error.
    """
    from digest.relevance.training import rebuild

    def progress(done: int, total: int) -> None:
        if not app.quiet and (done % PROGRESS_EVERY == 0 or done == total):
            click.echo(f"trained {done} of {total} readers with feedback", err=True)

    with errors(app):
        rebuilt = rebuild(app.store, app.config.model, now(), progress)
    if as_json:
        emit_json(rebuilt.as_json())
        return
    click.echo(
        f"model rebuilt: {rebuilt.papers} papers, {rebuilt.terms} terms, {rebuilt.dims} "
        f"dimensions; {rebuilt.readers} readers trained, {rebuilt.skipped} with fewer than "
        f"{app.config.model.min_likes} likes; {rebuilt.seconds:.1f} s"
    )


@click.command("evaluate")
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=30,
    show_default=True,
    help="Score only the newest N days (each day trains every reader once).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def evaluate_command(app: App, days: int, as_json: bool) -> None:
    """Replay history: each reader's model against trending, day by day.

    Would the readers' models have ordered each day's papers better than trending?
    Precision at 5 and 10 against what each reader liked (then or later).
    """
    from digest.relevance.evaluation import evaluate

    with errors(app):
        found = evaluate(app.store, app.config.model, days)
    if as_json:
        emit_json(found.as_json())
        return
    click.echo(f"{found.readers} readers, {found.days} reader-days with a model and a like")
    click.echo(f"{'order':<10} {'P@5':>6} {'P@10':>6}")
    for name, (at5, at10) in (("learned", found.learned), ("trending", found.trending)):
        click.echo(f"{name:<10} {at5:>6.3f} {at10:>6.3f}")
