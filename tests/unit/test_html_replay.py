"""shared/rendering.py reads plain markup itself (``_replay``): the same events, hence the same plain text
and the same refused links, as HTMLParser gives, on every kind of input, plain or not."""

from __future__ import annotations

import random
from html.parser import HTMLParser

import pytest

from vestnik.shared import rendering
from vestnik.shared.seeds import DEFAULTS


class _Recorder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[tuple] = []

    def handle_starttag(self, tag, attrs):
        self.events.append(("start", tag, tuple(attrs)))

    def handle_endtag(self, tag):
        self.events.append(("end", tag))

    def handle_data(self, data):
        if self.events and self.events[-1][0] == "data":  # HTMLParser may split a text: joined here
            self.events[-1] = ("data", self.events[-1][1] + data)
        else:
            self.events.append(("data", data))


def by_htmlparser(source: str) -> list[tuple]:
    parser = _Recorder()
    parser.feed(source)
    parser.close()
    return parser.events


def replayed(source: str) -> list[tuple]:
    parser = _Recorder()
    rendering._replay(parser, source)
    return parser.events


EDGES = [
    "", "plain text", "a &amp; b &lt;c&gt; &#1055;&#x440; &nbsp;x &unknown; & alone &amp",
    "<p>Здравствуйте, Анна!</p><p>Занятие <b>Робототехника</b> 25 ноября, 16:00 отменено.</p>",
    '<a href="https://x.example/u?a=1&amp;b=2">Отписаться</a> <a href=\'mailto:a@b.c\'>mail</a>',
    '<A HREF="javascript:alert(1)">x</A><img src="data:text/html,x"/><br/><br />line<BR>',
    '<a href="java&#9;script:alert(1)">x</a><p class=unquoted>u</p>',
    "<!-- a comment --><p>x</p>", "<!DOCTYPE html><p>x</p>", "a < b and c > d", "x <3 y", "<p>unclosed",
    "<script>var a = '<p>';</script><p>after</p>", "<style>p { color: red }</style>text",
    '<div data-x="1" hidden><ul><li>one<li>two</ul></div>', '<p title="a > b">x</p>', "</p>stray end",
    '<a href="">empty</a><a href>bare</a>', "<p>line\r\nbreak\n</p>", "<tg-emoji emoji-id=\"5\">x</tg-emoji>",
    "<?php echo 1 ?><p>x</p>", '<a\nhref="https://x.example"\n>multi-line tag</a>', "<p>a</p >", "&#0;&#xD800;",
]

PIECES = ["<p>", "</p>", "<b>", "</b>", "<br>", "<br/>", "<li>", "</li>", "text", " ", "\n", "&amp;", "&lt;",
          "&#39;", "Ё", "<", ">", "&", '<a href="https://x.example/?a=1&amp;b">', '<a href="javascript:x">',
          "</a>", '<img src="x.png" alt="">', "<!-- c -->", '<span class="tg-spoiler">', "</span>", "<P>",
          '<a title=\'q"uote\' href="tel:+7">', "<div\tid='1'>", "</div>", "<table><tr><td>", "x=1", "/"]


def corpus() -> list[str]:
    rng = random.Random(12)
    generated = ["".join(rng.choice(PIECES) for _ in range(rng.randint(1, 25))) for _ in range(1500)]
    return EDGES + [d.body for d in DEFAULTS] + generated


@pytest.mark.parametrize("chunk", range(8))
def test_replay_gives_htmlparsers_events_and_results(chunk):
    items = corpus()
    for source in items[chunk::8]:
        assert replayed(source) == by_htmlparser(source), source
        text = rendering._TextExtractor()
        text.feed(source)
        text.close()
        expected = rendering.re.sub(r"\n{3,}", "\n\n", rendering.re.sub(r"[ \t]+\n", "\n", "".join(text.parts))).strip()
        assert rendering.html_to_text(source) == expected, source
        finder = rendering._LinkFinder()
        finder.feed(source)
        finder.close()
        assert rendering.unsafe_links(source) == (finder.bad if rendering._URL_ATTR_HINT.search(source) else []), source
