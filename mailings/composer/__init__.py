"""
The newsletter composer: a newsletter is a list of blocks.

Blocks are stored as JSON (`Mailing.blocks`, and `blocks` on anything else
written with the composer, such as an action page's text): a list of dicts,
each with a short random "id" (kept across edits, so the page and the
accessibility check can name a block) and a "type":

    {"id": "b1", "type": "heading", "text": "Stand with Sudan", "level": 1}     level 1-3
    {"id": "b2", "type": "text", "html": "<p>Dear {{ first_name|default:\"friend\" }}, ...</p>"}
    {"id": "b3", "type": "image", "src": "/media/composer/x.png", "alt": "...",
                 "width": 600, "link": ""}                                       width in px
    {"id": "b4", "type": "button", "label": "Sign the petition", "url": "https://..."}
    {"id": "b5", "type": "quote", "html": "<p>...</p>", "cite": "Kate Ferguson"}
    {"id": "b6", "type": "divider"}
    {"id": "b7", "type": "columns", "columns": [{"html": "<p>..</p>"}, {"html": "<p>..</p>"}]}
    {"id": "b8", "type": "action", "headline": "...", "html": "<p>...</p>",
                 "label": "Write to your MP", "url": "https://..."}
    {"id": "b9", "type": "html", "html": "<table>...</table>"}    raw HTML (existing newsletters)

Rich text ("html" keys) is what the rich-text editor produces, sanitised with
nh3 on save. Merge fields are written as the sending engine reads them
(mailings.emails: {{ first_name|default:"friend" }}, {{ preferences_url }} ...);
staff insert them from a menu, never by typing.

Modules:
    blocks.py   block types, validation and sanitising (clean_blocks)
    render.py   blocks + EmailTemplate -> MJML -> responsive HTML; blocks -> plain text;
                blocks -> web HTML (web copy, action pages)
    checks.py   the accessibility and quality check (check_mailing -> [Problem])
"""
