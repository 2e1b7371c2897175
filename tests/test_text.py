"""plain(): text from users shown by Streamlit as exactly its characters."""

import re

import pytest

from ui.text import WORD_JOINER, plain

HOSTILE = [
    "![t](http://127.0.0.1:9/track.png)",
    "<b>x</b> <img src=x> <!-- c --> &amp; &#58;",
    ":red[x] :blue-background[y] :small[z] :material/science: **bold** _it_ ~~s~~ `code`",
    "$x^2$ and $$y$$",
    "[link](http://a.b) <https://a.b> [ref][1] [^1]",
    "# heading",
    "- item",
    "1. one",
    "> quote",
    "| a | b |",
    "***",
    "C:\\data\\runs\\",
]
# Patterns Streamlit's markdown looks for in the parsed text, after escapes are resolved.
STREAMLIT_TEXT_PATTERNS = [
    r":[\w+-]+:",  # emoji shortcodes, :streamlit:, :material_home:
    r"https?://|www\.|@[-\w]+\.",  # GFM autolinks
    r"(^|\s)(<->|->|<-|--|>=|<=|~=)(\s|$)",  # arrows and dashes
]


def meaningful(markdown: str) -> str:
    """What is left once every backslash-escaped character is taken out."""
    return re.sub(r"\\.", "", markdown)


def shown(markdown: str, keep_joiners: bool = False) -> str:
    text = re.sub(r"\\(.)", r"\1", markdown)
    return text if keep_joiners else text.replace(WORD_JOINER, "")


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_keeps_no_markdown_meaning_and_shows_as_typed(text):
    escaped = plain(text)
    assert re.fullmatch(r"[A-Za-z0-9\s\u2060]*", meaningful(escaped)), escaped
    assert shown(escaped) == text


FOUND_AFTER_PARSING = [
    ":smile: :+1: :streamlit: :material_home:",
    "see http://a.io, www.a.io or me@a.io",
    "a -> b <- c <-> d -- e >= f <= g ~= h",
    "12:30:45",
]


@pytest.mark.parametrize("text", FOUND_AFTER_PARSING)
def test_patterns_streamlit_finds_after_parsing_are_broken(text):
    escaped = plain(text)
    assert shown(escaped) == text
    for pattern in STREAMLIT_TEXT_PATTERNS:
        assert not re.search(pattern, shown(escaped, keep_joiners=True)), (pattern, escaped)


def test_ordinary_text_is_unchanged():
    assert plain("quick start") == "quick start"
    assert plain("Run ab12 read 3 epochs") == "Run ab12 read 3 epochs"
    assert WORD_JOINER not in plain("pass --weights-file or -1 or a-b or x>=1")  # copied as is
    assert shown(plain("teacher cifarnet (scratch) · 85.1% · ab12")) == (
        "teacher cifarnet (scratch) · 85.1% · ab12"
    )


def test_white_space_shows_as_one_space_as_html_would():
    assert plain("  two\n\n    lines\t") == "two lines"
    assert plain(3) == "3"
