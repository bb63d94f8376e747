"""CSS inlining once per template: each digest gets the styles css-inline would give it."""

import dataclasses
from html.parser import HTMLParser

import pytest
from css_inline import CSSInliner
from jinja2 import DictLoader, Environment

from digest.errors import RenderError
from digest.inlining import inlined
from digest.match import Suggestion
from digest.render import HTML_TEMPLATE, DigestContent, Health, Renderer, template_environment

from .test_render import ADA, CONFIG, content_for, paper

HOSTILE = 'Q&A <b>"quoted"</b> it\'s\u00a0a  <script>x</script> & more'
Event = tuple[str, ...]


class Document(HTMLParser):
    """A document as events: tags with their attributes (in any order), and whole texts."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[Event] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.events.append(("start", tag, *sorted(f"{k}={v}" for k, v in attrs)))

    def handle_endtag(self, tag: str) -> None:
        self.events.append(("end", tag))

    def handle_data(self, data: str) -> None:
        if self.events and self.events[-1][0] == "text":
            data = self.events.pop()[1] + data
        self.events.append(("text", data))


def hostile() -> DigestContent:
    person = dataclasses.replace(ADA, name=HOSTILE, filter=f'"{HOSTILE}" OR agents')
    found = [paper(1, title=HOSTILE), paper(2, abstract=f"{HOSTILE} agents " * 30)]
    return content_for(found, subscriber=person, more=3)


def with_suggestions() -> DigestContent:
    liked = Suggestion(paper(7, title=HOSTILE), 0.9, because=HOSTILE)
    return dataclasses.replace(content_for([paper(1)]), suggestions=(liked,), learned=True)


CONTENTS = {
    "papers": lambda: content_for([paper(n) for n in range(1, 6)]),
    "hostile values": hostile,
    "suggestions": with_suggestions,
    "stale, nothing new": lambda: content_for([], health=Health("2026-11-22T06:00:00Z", True)),
    "never ingested": lambda: content_for([], health=Health(None, False), more=1),
}


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(CONFIG)


@pytest.mark.parametrize("case", CONTENTS)
def test_a_digest_has_the_document_css_inline_makes_of_it(renderer: Renderer, case: str) -> None:
    content = CONTENTS[case]()
    plain = template_environment().get_template(HTML_TEMPLATE).render(renderer.context(content))
    expected = CSSInliner(load_remote_stylesheets=False).inline(plain)
    assert Document(renderer.html(content)).events == Document(expected).events


def test_styles_follow_descendant_selectors_through_template_tags() -> None:
    env = Environment(
        loader=DictLoader(
            {
                "page.html.j2": "<style>{% include 'style.css' %}</style>"
                '<div class="footer">{% for x in xs %}<p>{{ x }}</p>{% endfor %}</div><p>out</p>',
                "style.css": ".footer p { color: red; }",
            }
        ),
        autoescape=True,
    )
    html = inlined(env, "page.html.j2").render(xs=["<a>"])
    assert '<p style="color: red;">&lt;a&gt;</p>' in html
    assert "<p>out</p>" in html
    assert "<style>" not in html


def test_a_template_tag_inside_a_start_tag_is_refused() -> None:
    env = Environment(
        loader=DictLoader({"bad.html.j2": '<p{% if x %} class="x"{% endif %}>text</p>'})
    )
    with pytest.raises(RenderError, match="did not survive CSS inlining"):
        inlined(env, "bad.html.j2")
