"""Blocks are validated and sanitised on the way in (mailings.composer.blocks.clean_blocks)."""

import pytest

from mailings.composer.blocks import BlockError, clean_blocks


def test_rich_text_loses_scripts_event_handlers_and_javascript_links():
    [block] = clean_blocks(
        [
            {
                "type": "text",
                "html": '<p onclick="steal()">Hello <script>alert(1)</script>'
                '<a href="javascript:alert(1)">bad</a> <img src=x onerror=alert(1)>'
                '<a href="https://example.org/ok" onmouseover="x()">good</a>'
                '<iframe src="https://evil.example"></iframe><style>p{}</style></p>',
            }
        ]
    )

    html = block["html"]
    assert "script" not in html and "alert" not in html
    assert "onclick" not in html and "onmouseover" not in html and "onerror" not in html
    assert "javascript:" not in html
    assert "<iframe" not in html and "<style" not in html and "<img" not in html
    assert '<a href="https://example.org/ok">good</a>' in html


def test_merge_fields_survive_sanitising_in_text_and_links():
    [block] = clean_blocks(
        [
            {
                "type": "text",
                "html": '<p>Dear {{ first_name|default:"friend" }}, '
                '<a href="{{ preferences_url }}">choose what you hear about</a>.</p>',
            }
        ]
    )

    assert '{{ first_name|default:"friend" }}' in block["html"]
    assert 'href="{{ preferences_url }}"' in block["html"]


def test_only_the_rich_text_tags_remain():
    [block] = clean_blocks(
        [{"type": "text", "html": '<div class="x"><h2>Title</h2><font color="red">hi</font></div>'}]
    )

    assert block["html"] == "<h2>Title</h2>hi"


def test_each_block_gets_an_id_and_ids_stay_unique():
    blocks = clean_blocks(
        [
            {"type": "divider"},
            {"id": "keep", "type": "divider"},
            {"id": "keep", "type": "divider"},
        ]
    )

    ids = [block["id"] for block in blocks]
    assert ids[1] == "keep"
    assert len(set(ids)) == 3 and all(ids)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"type": "poll"}, "Block 2 has an unknown type 'poll'"),
        (
            {"type": "button", "label": "Sign", "url": ""},
            r"Block 2 \(button\): the button needs a link",
        ),
        (
            {"type": "button", "label": "Sign", "url": "javascript:alert(1)"},
            r"Block 2 \(button\): the button's link must start with https://",
        ),
        ({"type": "heading", "text": "Hi", "level": 5}, r"Block 2 \(heading\): the level must be"),
        ({"type": "image", "src": ""}, r"Block 2 \(image\): choose an image"),
        (
            {"type": "image", "src": "https://example.org/a.png", "width": 900},
            r"Block 2 \(image\): the width must be between 1 and 600",
        ),
        ({"type": "columns", "columns": [{"html": "x"}]}, r"Block 2 \(columns\): columns come"),
        ("text", "Block 2 is not a block"),
    ],
)
def test_structural_errors_name_the_block(block, message):
    with pytest.raises(BlockError, match=message):
        clean_blocks([{"type": "divider"}, block])


def test_missing_alt_text_is_saved_for_the_check_to_find():
    """A draft may lack alt text for now; the check blocks sending instead."""
    [block] = clean_blocks([{"type": "image", "src": "https://example.org/a.png", "width": "300"}])

    assert block["alt"] == "" and block["width"] == 300


def test_staff_without_the_permission_cannot_add_an_html_block():
    with pytest.raises(BlockError, match=r"Block 1 \(HTML\): only staff allowed to edit raw HTML"):
        clean_blocks([{"type": "html", "html": "<table></table>"}], allow_html=False)


def test_staff_without_the_permission_may_keep_or_move_an_html_block_but_not_change_it():
    saved = clean_blocks([{"id": "old", "type": "html", "html": "<p>Old body</p>"}])

    kept = clean_blocks([{"type": "divider"}, *saved], allow_html=False, previous=saved)
    assert kept[1] == saved[0]
    with pytest.raises(BlockError, match="only staff allowed to edit raw HTML"):
        clean_blocks(
            [{"id": "old", "type": "html", "html": "<p>New body</p>"}],
            allow_html=False,
            previous=saved,
        )


def test_raw_html_keeps_its_layout_but_not_its_scripts():
    [block] = clean_blocks(
        [
            {
                "type": "html",
                "html": '<table width="100%"><tr><td style="color:red" onclick="x()">Cell'
                "<script>alert(1)</script></td></tr></table><p>Unclosed",
            }
        ]
    )

    assert 'style="color:red"' in block["html"] and 'width="100%"' in block["html"]
    assert "onclick" not in block["html"] and "script" not in block["html"]
    assert block["html"].endswith("<p>Unclosed</p>")
