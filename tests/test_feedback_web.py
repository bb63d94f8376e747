"""Feedback links ("more like this", "not for me") against the real app under uvicorn.

The signature binds reader, paper and verdict; a GET never records (link scanners);
the button's POST records, the undo clears, both are idempotent; readers who left,
and wrong links, are 404.  The links come from a real digest, sent to the Maildir.
"""

import re
from contextlib import closing

import feedparser
import httpx
import pytest

from digest import links
from digest.models import Feedback, Subscriber, Verdict
from digest.store import Store
from tests import test_web
from tests.test_web import MakeSite, Site, link_path, text_of

later = test_web.later  # the web tests' fixtures: a real server per test
make_site = test_web.make_site
site = test_web.site
_FEEDBACK = re.compile(r"More like this: (http://\S+) · Not for me: (http://\S+)")


def papers(site: Site, count: int = 2) -> list[str]:
    """The ids of ``count`` seeded papers."""
    with closing(Store(site.config.storage.database)) as store:
        return [paper.id for paper in store.papers()[:count]]


def verdicts(site: Site, person: Subscriber) -> list[tuple[str, Verdict]]:
    """The reader's stored verdicts as (paper id, verdict), oldest first."""
    with closing(Store(site.config.storage.database)) as store:
        given: list[Feedback] = store.feedback(person.id)
        ids = {paper.seq: paper.id for paper in store.papers(seqs=[f.paper_seq for f in given])}
    return [(ids[f.paper_seq], f.verdict) for f in given]


def path(person: Subscriber, paper_id: str, verdict: Verdict) -> str:
    return links.feedback_path(person, paper_id, verdict)


def press(site: Site, where: str, **form: str) -> httpx.Response:
    """The page's button: a POST to the link itself, with no cookie and no CSRF token."""
    site.client.cookies.clear()
    return site.client.post(where, data=form)


def test_a_get_shows_one_button_and_records_nothing(site: Site) -> None:
    person = site.active("ada@example.org")
    [paper, _] = papers(site)
    where = path(person, paper, "more")
    for _ in range(3):  # link scanners, previews, a curious click
        response = site.client.get(where)
        assert response.status_code == 200
    assert f'<form method="post" action="{where}">' in response.text
    assert response.text.count("<button") == 1
    assert "More like this" in response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert verdicts(site, person) == []


def test_the_button_records_and_says_what_with_an_undo(site: Site) -> None:
    person = site.active("ada@example.org")
    [paper, _] = papers(site)
    with closing(Store(site.config.storage.database)) as store:
        found = store.paper(paper)
    assert found is not None
    title = found.title
    response = press(site, path(person, paper, "more"))
    assert response.status_code == 200
    assert "Recorded: more papers like" in response.text
    assert f"<em>{title}</em>" in response.text
    assert 'name="action" value="undo"' in response.text
    assert verdicts(site, person) == [(paper, "more")]
    again = site.client.get(path(person, paper, "more"))  # the link, opened once more
    assert "Recorded: more papers like" in again.text


def test_the_pages_behind_a_feedback_link_show_no_other_token_of_the_reader(site: Site) -> None:
    """The private feed carries feedback links: they must not lead to the manage page
    (a leaked feed URL changes nothing), nor a leaked feedback link to the feed."""
    person = site.active("ada@example.org")
    [paper, _] = papers(site)
    where = path(person, paper, "more")
    pages = [
        site.client.get(where).text,
        press(site, where).text,
        press(site, where, action="undo").text,
    ]
    secrets = [links.token(person, p) for p in ("manage", "unsubscribe", "feed")]
    for page in pages:
        assert not [token for token in secrets if token in page]


def test_pressing_twice_changes_nothing_and_answers_the_same(site: Site) -> None:
    person = site.active("ada@example.org")
    [paper, _] = papers(site)
    first = press(site, path(person, paper, "less"))
    with closing(Store(site.config.storage.database)) as store:
        [before] = store.feedback(person.id)
    site.clock.advance(minutes=5)
    second = press(site, path(person, paper, "less"))
    assert first.status_code == second.status_code == 200
    assert first.text == second.text
    assert "Recorded: fewer papers like" in second.text
    with closing(Store(site.config.storage.database)) as store:
        assert store.feedback(person.id) == [before]  # the first click's time is kept


def test_undo_clears_the_verdict_and_is_idempotent(site: Site) -> None:
    person = site.active("ada@example.org")
    [paper, other] = papers(site)
    press(site, path(person, paper, "more"))
    press(site, path(person, other, "less"))
    first = press(site, path(person, paper, "more"), action="undo")
    second = press(site, path(person, paper, "more"), action="undo")
    assert first.status_code == second.status_code == 200
    assert first.text == second.text
    assert "Removed: you no longer ask for more papers like" in first.text
    assert first.text.count("<button") == 1  # the way back: record it again
    assert verdicts(site, person) == [(other, "less")]  # the other paper's is kept


def test_the_other_verdict_replaces_and_its_undo_is_not_the_first_links(site: Site) -> None:
    person = site.active("ada@example.org")
    [paper, _] = papers(site)
    press(site, path(person, paper, "more"))
    press(site, path(person, paper, "less"))
    assert verdicts(site, person) == [(paper, "less")]
    assert "Ask for more papers like" in site.client.get(path(person, paper, "more")).text
    press(site, path(person, paper, "more"), action="undo")  # an old tab's undo
    assert verdicts(site, person) == [(paper, "less")]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_link_signed_for_another_paper_verdict_or_reader_is_404(site: Site, method: str) -> None:
    person = site.active("ada@example.org")
    other = site.active("bob@example.org")
    [paper, second] = papers(site)
    token = links.feedback_token(person, paper, "more")
    wrong = [
        f"/feedback/{token}/{second}/more",  # replayed for another paper
        f"/feedback/{token}/{paper}/less",  # or for the other verdict
        path(other, paper, "more").replace(f"/{other.id}-", f"/{person.id}-"),  # Bob's MAC
        f"/feedback/{person.id}-{'0' * 20}/{paper}/more",
        f"/feedback/{links.token(person, 'manage')}/{paper}/more",  # another purpose's token
        f"/feedback/999-{token.split('-')[1]}/{paper}/more",
        f"/feedback/{token}/{paper}/MORE",
        f"/feedback/{token}/{'0' * 16}/more",  # well signed would not help: no such paper
        f"/feedback/not-a-token/{paper}/more",
    ]
    for where in wrong:
        response = site.client.request(method, where)
        assert response.status_code == 404, where
        assert "This link is not valid" in response.text
    assert verdicts(site, person) == verdicts(site, other) == []


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_reader_who_unsubscribed_is_refused(site: Site, method: str) -> None:
    person = site.active("ada@example.org")
    [paper, _] = papers(site)
    press(site, path(person, paper, "more"))
    assert press(site, link_path(person, "unsubscribe")).status_code == 200
    for verdict in ("more", "less"):
        response = site.client.request(method, path(person, paper, verdict))
        assert response.status_code == 404
    undo = press(site, path(person, paper, "more"), action="undo")
    assert undo.status_code == 404
    assert verdicts(site, person) == [(paper, "more")]


def test_a_paused_reader_still_gives_feedback(site: Site) -> None:
    person = site.active("ada@example.org")
    manage = link_path(person, "manage")
    site.client.post(manage, data={"csrf": site.csrf(manage), "action": "pause"})
    [paper, _] = papers(site)
    assert press(site, path(person, paper, "less")).status_code == 200
    assert verdicts(site, person) == [(paper, "less")]


def test_the_links_in_a_digest_lead_to_the_button_that_records(make_site: MakeSite) -> None:
    site = make_site(digest={"max_papers": 3})
    person = site.active("ada@example.org", "diffusion OR model")
    [mail] = site.send_digests()
    found = _FEEDBACK.findall(text_of(mail))
    assert len(found) == 3
    html = mail.get_body(preferencelist=("html",))
    assert html is not None
    for more, less in found:
        assert f'href="{more}"' in str(html.get_content())
        assert f'href="{less}"' in str(html.get_content())
    more, less = found[0]
    assert site.client.get(more).status_code == 200
    assert verdicts(site, person) == []
    assert press(site, less).status_code == 200
    [(paper, verdict)] = verdicts(site, person)
    assert verdict == "less"
    assert f"/{paper}/less" in less


# -- the manage page -----------------------------------------------------------------------


def title_of(site: Site, paper_id: str) -> str:
    with closing(Store(site.config.storage.database)) as store:
        found = store.paper(paper_id)
    assert found is not None
    return found.title


def test_the_manage_page_lists_what_the_reader_marked_and_takes_it_back(site: Site) -> None:
    person = site.active("ada@example.org")
    [liked, dismissed] = papers(site)
    manage = link_path(person, "manage")
    assert "None yet." in site.client.get(manage).text
    press(site, path(person, liked, "more"))
    press(site, path(person, dismissed, "less"))
    page = site.client.get(manage).text
    assert "More like this:" in page
    assert "Not for me:" in page
    assert page.index(title_of(site, liked)) < page.index("Not for me:")
    assert page.index("Not for me:") < page.index(title_of(site, dismissed))
    for paper in (liked, dismissed):
        assert f'name="paper" value="{paper}"' in page
    form = {"csrf": site.csrf(manage), "action": "unmark", "paper": liked}
    response = site.client.post(manage, data=form)
    assert response.status_code == 303
    assert verdicts(site, person) == [(dismissed, "less")]
    again = site.client.post(manage, data=form)  # the same button, from a stale page
    assert again.status_code == 303
    assert "That paper is off your list." in site.client.get(again.headers["location"]).text
    assert verdicts(site, person) == [(dismissed, "less")]


def test_taking_a_mark_back_needs_the_csrf_token(site: Site) -> None:
    person = site.active("ada@example.org")
    [paper, _] = papers(site)
    press(site, path(person, paper, "more"))
    manage = link_path(person, "manage")
    response = site.client.post(manage, data={"action": "unmark", "paper": paper})
    assert response.status_code == 403
    assert verdicts(site, person) == [(paper, "more")]


def test_the_suggestions_box_is_ticked_at_first_and_saved_as_left(site: Site) -> None:
    person = site.active("ada@example.org")
    manage = link_path(person, "manage")
    box = '<input type="checkbox" name="suggestions" value="on" checked>'
    assert box in site.client.get(manage).text
    form = {"csrf": site.csrf(manage), "action": "save", "filter": "diffusion"}
    assert site.client.post(manage, data=form).status_code == 303  # unticked: nothing sent
    off = site.subscriber("ada@example.org")
    assert off is not None
    assert not off.suggestions
    assert box not in site.client.get(manage).text
    form = {**form, "suggestions": "on"}
    assert site.client.post(manage, data=form).status_code == 303
    on = site.subscriber("ada@example.org")
    assert on is not None
    assert on.suggestions
    with closing(Store(site.config.storage.database)) as store:
        details = [event["detail"] for event in store.events(person.id)]
    assert details.count("suggestions") == 2


# -- the paper page and the private feed ---------------------------------------------------


def test_a_paper_page_shows_the_buttons_only_through_a_readers_link(site: Site) -> None:
    person = site.active("ada@example.org")
    [paper, _] = papers(site)
    public = site.client.get(f"/papers/{paper}")
    assert "<button" not in public.text
    assert public.headers["cache-control"] == "public, max-age=300"
    reader = links.token(person, "feed")
    for wrong in (links.token(person, "manage"), "not-a-token"):
        assert "<button" not in site.client.get(f"/papers/{paper}?reader={wrong}").text
    mine = site.client.get(f"/papers/{paper}?reader={reader}")
    assert mine.headers["cache-control"] == "no-store"
    for verdict in ("more", "less"):
        assert f'<form method="post" action="{path(person, paper, verdict)}"' in mine.text
    assert verdicts(site, person) == []
    assert press(site, path(person, paper, "less")).status_code == 200
    marked = site.client.get(f"/papers/{paper}?reader={reader}").text
    assert "You marked this paper “Not for me”." in marked
    press(site, link_path(person, "unsubscribe"))
    assert "<button" not in site.client.get(f"/papers/{paper}?reader={reader}").text


def test_the_more_page_leads_to_the_readers_paper_pages(make_site: MakeSite) -> None:
    site = make_site(digest={"max_papers": 5})
    person = site.active("ada@example.org", "diffusion OR model")
    [mail] = site.send_digests()
    more = re.search(r"see them all: (http://\S+)", text_of(mail))
    assert more is not None
    page = site.client.get(more.group(1)).text
    reader = links.token(person, "feed")
    listed = re.findall(rf'href="/papers/([0-9a-f]{{16}})\?reader={reader}"', page)
    assert listed
    answer = site.client.get(f"/papers/{listed[0]}?reader={reader}").text
    assert path(person, listed[0], "more") in answer


def test_each_private_feed_entry_carries_the_readers_verdict_links(site: Site) -> None:
    person = site.active("ada@example.org")
    token = links.token(person, "feed")
    for fmt in ("atom", "rss"):
        feed = feedparser.parse(site.client.get(f"/feeds/{token}.{fmt}").content)
        assert feed.entries
        for entry in feed.entries:
            paper = entry.id.rsplit("/", 1)[1]
            content = entry.content[0].value if fmt == "atom" else entry.description
            for verdict in ("more", "less"):
                assert f'href="{site.url}{path(person, paper, verdict)}"' in content
        public = site.client.get(f"/feeds/all.{fmt}").text
        assert "/feedback/" not in public
