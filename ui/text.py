"""Text from users on a page: run labels, paths, class and file names, error messages.

Streamlit reads what it shows (markdown, captions, alerts, metrics, progress text, image captions,
widget labels) as markdown; `plain` turns any string into markdown that shows just its characters.
Selectbox and multiselect options and dataframe cells are plain text already: pass them as they are.
"""

from __future__ import annotations

import re

WORD_JOINER = "\u2060"  # invisible, and not a letter, a space or punctuation
# CommonMark lets a backslash escape any ASCII punctuation, and then it means nothing.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# Streamlit also rewrites the parsed text itself, where escapes are already gone; a word joiner
# breaks each pattern it looks for.
_TEXT_PATTERNS = re.compile(
    r"(?<=:)(?=[\w+-]+:)"  # :smile:, :streamlit:, :material_home: (emoji, logo, icon)
    r"|(?<=:)(?=//)|(?<=www)(?=\.)|(?<=@)"  # http://…, www.…, a@b.c (links)
    r"|(?<=(?<!\S)[-<>~])(?=(?:->|[->=])(?!\S))",  # -> <- <-> -- >= <= ~= (arrows, dashes)
    re.IGNORECASE,
)


def plain(text: object) -> str:
    """Markdown that Streamlit shows as `text`, character for character: no emphasis, links,
    images, HTML, LaTeX, colours or icons. Runs of white space show as one space, as HTML does.

        st.error(f"Not started: {plain(error)}")
        plain("![t](http://x/t.png) <b>x</b> :red[x]")  # shows exactly that
    """
    collapsed = " ".join(str(text).split())
    return _PUNCTUATION.sub(r"\\\1", _TEXT_PATTERNS.sub(WORD_JOINER, collapsed))
