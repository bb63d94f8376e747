"""CSS inlining, once per process: the digest's HTML template with its styles already inlined.

Mail clients drop ``<style>``, so every element carries its styles in a ``style``
attribute.  Inlining each rendered digest (css-inline parses and re-serialises the
whole HTML) cost more than rendering it; but which element gets which style depends
only on the template, never on a value.  So css-inline runs once, on the template's
own source: includes expanded, each ``{% ... %}`` tag hidden in an HTML comment (a
comment stays where it is, even between table rows), inlined, then the tags are
given back to Jinja2.  Values are autoescaped by Jinja2 when each digest renders.

A template must keep its Jinja2 tags between elements or in text, never inside a
start tag (``<p{% if x %} class="x"{% endif %}>``): the HTML parser would mangle
it, so ``inlined`` refuses any template whose tags or expressions do not come
through unchanged.
"""

import re
from functools import lru_cache

from css_inline import CSSInliner
from jinja2 import Environment, Template

from digest.errors import RenderError

_COMMENT = re.compile(r"\{#.*?(?:-#\}\s*|#\}\n?)", re.S)  # as Jinja2 strips it (trim_blocks)
_INCLUDE = re.compile(r"\{%-?\s*include\s+([\"'])(.+?)\1\s*-?%\}\n?")  # trim_blocks: its \n goes
_TAG = re.compile(r"\{%.*?%\}", re.S)
_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.S)
_HIDDEN = ("<!--{%", "%}-->")


@lru_cache(maxsize=4)
def inlined(env: Environment, name: str) -> Template:
    """``name`` compiled with its ``<style>`` inlined into its elements (autoescaped)."""
    source = expanded(env, name)
    hidden = _TAG.sub(lambda tag: f"<!--{tag.group(0)}-->", source)
    styled = CSSInliner(load_remote_stylesheets=False).inline(hidden)
    restored = styled.replace(_HIDDEN[0], "{%").replace(_HIDDEN[1], "%}")
    # tags in their order; expressions may move with the attributes css-inline reorders
    if _TAG.findall(restored) != _TAG.findall(source) or sorted(
        _EXPRESSION.findall(restored)
    ) != sorted(_EXPRESSION.findall(source)):
        raise RenderError(
            f"{name}: a Jinja2 tag did not survive CSS inlining",
            "keep template tags out of HTML start tags",
        )
    return env.from_string(restored)


def expanded(env: Environment, name: str) -> str:
    """The template's source with its comments dropped and its includes in place."""
    if env.loader is None:
        raise RenderError(f"{name}: no template loader", "use digest.render.template_environment")
    source = _COMMENT.sub("", env.loader.get_source(env, name)[0])
    return _INCLUDE.sub(lambda include: expanded(env, include.group(2)), source)
