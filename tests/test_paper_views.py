"""Paper views: a paper's own parts are kept, and never outlive a change of its row."""

import dataclasses

import pytest

from digest import paper_views
from digest.links import Links, links_for
from digest.models import Subscriber
from digest.paper_views import PaperViews

from .test_render import ADA, CONFIG, paper


def reader(subscriber: Subscriber = ADA) -> Links:
    return links_for(subscriber, CONFIG.web.base_url)


def test_a_paper_seen_again_since_shows_its_new_badge_and_title() -> None:
    views, first = PaperViews(CONFIG.digest.paper_url), paper(1, times_seen=1)
    assert views.view(first, reader()).badge.startswith("New")
    again = dataclasses.replace(
        first, paper=dataclasses.replace(first.paper, times_seen=2, title="A better title")
    )
    view = views.view(again, reader())
    assert view.badge.startswith("Trending")
    assert view.title == "A better title"


def test_each_reader_gets_their_own_feedback_links_and_highlights() -> None:
    views, shown = PaperViews(CONFIG.digest.paper_url), paper(1)
    bob = dataclasses.replace(ADA, id=ADA.id + 1, secret="another secret")
    at = shown.paper.abstract.find("agents")
    marked = dataclasses.replace(shown, spans=((at, at + len("agents")),))
    ada_view, bob_view = views.view(shown, reader()), views.view(marked, reader(bob))
    assert ada_view.feedback != bob_view.feedback
    assert [text for text, hl in bob_view.segments if hl] == ["agents"]
    assert not any(hl for _, hl in ada_view.segments)
    assert ada_view.title == bob_view.title


def test_the_kept_papers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paper_views, "KEPT", 3)
    views = PaperViews(CONFIG.digest.paper_url)
    for n in range(1, 11):
        views.view(paper(n), reader())
    assert len(views) == 3
