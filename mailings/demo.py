"""
Demo newsletters about the campaign's real subjects, written with the
composer's blocks in the charity's default email template: a draft ready to
preview and test-send, one scheduled, and one already sent with a report
(deliveries, a few bounces and unsubscribes, opens and clicks over two days)
and listed in the public archive. All three pass the accessibility check.

Written with bulk inserts, so 100,000 demo supporters add seconds, not
minutes. Links point at example.org, and every demo address is at
example.org too, so nothing here can reach a real person.
"""

import datetime
import random
import struct
import uuid
import zlib

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from crm.models import CampaignInterest, ConsentRecord, Supporter
from crm.services import supporter_mark_undeliverable, supporter_unsubscribe
from mailings import reports
from mailings.composer.blocks import clean_blocks
from mailings.models import COMPOSER_IMAGES, Delivery, DeliveryEvent, EmailTemplate, Mailing

BANNER = "demo-r2p-banner.png"
BANNER_ALT = "An illustration of eight candles burning in a row, as at a vigil"

DUTY_TO_PREVENT = [
    {"type": "heading", "level": 1, "text": "The UK's duty to prevent atrocities"},
    {
        "type": "text",
        "html": '<p>Dear {{ first_name|default:"friend" }},</p>'
        "<p>Genocide and mass atrocities never come out of nowhere. They follow warning signs "
        "that can be seen months, sometimes years, ahead: hate speech against a minority, "
        "people stripped of their rights, armed groups recruiting, the rule of law breaking "
        "down. When the world says \u201cnever again\u201d and it happens again, it is because "
        "those signs were missed, or seen and ignored.</p>",
    },
    {"type": "image", "src": "", "alt": BANNER_ALT, "width": 536, "link": ""},
    {
        "type": "text",
        "html": "<p>The United Kingdom has signed up, with every member of the United Nations, "
        "to the <strong>Responsibility to Protect</strong>: the promise that every state "
        "protects its people from genocide, war crimes, ethnic cleansing and crimes against "
        "humanity, and that other countries help when it cannot or will not.</p>",
    },
    {
        "type": "quote",
        "html": "<p>Each individual State has the responsibility to protect its populations "
        "from genocide, war crimes, ethnic cleansing and crimes against humanity.</p>",
        "cite": "2005 World Summit Outcome, paragraph 138",
    },
    {"type": "heading", "level": 2, "text": "What prevention looks like"},
    {
        "type": "text",
        "html": "<ul><li>Early warning that reaches ministers while there is still time to "
        "act.</li><li>Diplomats, aid and sanctions ready to use <em>before</em> violence "
        "starts.</li><li>Justice for survivors, so that those who plan atrocities know they "
        "will answer for them.</li></ul><p>Preventing atrocities costs a fraction of what "
        "conflict, refugee crises and rebuilding cost, and it saves lives. It needs a "
        "government that treats prevention as a duty, not an afterthought.</p>",
    },
    {
        "type": "button",
        "label": "Read our two-page briefing",
        "url": "https://example.org/briefings/uk-duty-to-prevent",
    },
    {"type": "text", "html": "<p>Thank you for standing with us,<br>The campaign team</p>"},
]

WRITE_TO_YOUR_MP = [
    {
        "type": "heading",
        "level": 1,
        "text": '{{ first_name|default:"Friend" }}, will you write to your MP?',
    },
    {
        "type": "text",
        "html": "<p>The UK still has no cross-government strategy for preventing atrocities. "
        "Departments work on early warning, aid and diplomacy separately, and nobody is in "
        "charge of joining them up. A strategy would change that: one plan, one minister "
        "responsible, and a report to Parliament every year on what was done.</p>"
        "<p>MPs tell us that letters from their own constituents are what make them act.</p>",
    },
    {
        "type": "action",
        "headline": "Write to your MP in five minutes",
        "html": '<ol><li>Find your MP from your postcode ({{ postcode|default:"you will need '
        'it" }}).</li><li>Use our suggested letter, and add a line about why this matters to '
        "you.</li><li>Ask your MP to write to the Foreign Secretary and to raise the strategy "
        "in Parliament.</li></ol>",
        "label": "Write to your MP now",
        "url": "https://example.org/act/write-to-your-mp",
    },
    {
        "type": "text",
        "html": "<p>If your MP replies, please forward the answer to us: it helps us see who "
        "is listening.</p>",
    },
    {"type": "divider"},
    {"type": "text", "html": "<p>With thanks,<br>The campaign team</p>"},
]

SECURITY_COUNCIL = [
    {"type": "heading", "level": 1, "text": "Inside this week's Security Council debate"},
    {
        "type": "text",
        "html": '<p>Dear {{ first_name|default:"friend" }},</p><p>This week the UN Security '
        "Council held its open debate on the protection of civilians in armed conflict. "
        "Member states heard from UN officials and civil society about civilians caught up in "
        "conflicts around the world, and about the gap between the promises made in New York "
        "and what happens on the ground.</p>",
    },
    {"type": "heading", "level": 2, "text": "What the UK said"},
    {
        "type": "text",
        "html": "<p>The UK, as one of the Council's permanent members, spoke about "
        "accountability for attacks on civilians and humanitarian workers. We welcome that, "
        "and we will keep asking ministers to match their words with action: early warning, "
        "support for local peacebuilders, and a willingness to act before violence "
        "escalates.</p>",
    },
    {"type": "heading", "level": 2, "text": "What happens next"},
    {
        "type": "text",
        "html": "<p>Our partners in the Responsibility to Protect network will follow up with "
        "the UK mission to the UN. We will report back on what they hear, and on how you can "
        "help.</p>",
    },
    {
        "type": "columns",
        "columns": [
            {
                "html": "<h3>The debate</h3><p>"
                '<a href="https://example.org/un/protection-of-civilians-debate">Read our '
                "summary of the debate</a>, with what each Council member said.</p>"
            },
            {
                "html": "<h3>The background</h3><p>"
                '<a href="https://example.org/r2p/what-is-r2p">What is the Responsibility to '
                "Protect?</a> A short guide to the promise and how it is kept.</p>"
            },
        ],
    },
    {"type": "text", "html": "<p>The campaign team</p>"},
]

NEWSLETTERS = [
    {
        "name": "Duty to prevent: autumn briefing",
        "subject": "The UK's duty to prevent atrocities",
        "preheader": "Why prevention comes first, and what the UK has promised.",
        "blocks": DUTY_TO_PREVENT,
        "interests": ["atrocity-prevention", "r2p"],
    },
    {
        "name": "MP letters: atrocity-prevention strategy",
        "subject": '{{ first_name|default:"Friend" }}, five minutes to write to your MP',
        "preheader": "Ask your MP to back a UK atrocity-prevention strategy.",
        "blocks": WRITE_TO_YOUR_MP,
        "interests": ["atrocity-prevention", "events"],
        "scheduled_in": datetime.timedelta(days=7),
    },
    {
        "name": "UN Security Council: protection of civilians debate",
        "subject": "Inside this week's UN Security Council debate",
        "preheader": "What the UK said, and what happens next.",
        "blocks": SECURITY_COUNCIL,
        "interests": ["un-security-council", "r2p"],
        "sent_ago": datetime.timedelta(days=3),
        "in_archive": True,
    },
]


def demo_template():
    """Return the charity's default email template, made once."""
    template = EmailTemplate.objects.default()
    if template is None:
        template = EmailTemplate.objects.create(
            name="Campaign newsletter",
            postal_address="1 Example Street\nLondon\nN1 1AA",
            footer_text="You can reply to this email: a person in the campaign team reads "
            "every answer.",
            is_default=True,
        )
    return template


def demo_banner_src():
    """Return the address of the demo banner image, drawn into media storage once."""
    path = f"{COMPOSER_IMAGES}{BANNER}"
    if not default_storage.exists(path):
        default_storage.save(path, ContentFile(_banner_png()))
    return reverse("newsletter-image", args=[BANNER])


def _banner_png(width=1072, height=400):
    """Return a PNG of candles burning in a row on a dark band: the demo's picture."""
    flames = list(range(90, width, 130))
    flame_y = int(height * 0.55)
    rows = []
    for y in range(height):
        shade = y / height
        background = (int(13 + 30 * shade), int(59 - 30 * shade), int(79 - 40 * shade))
        pixels = [background] * width
        for fx in flames:
            if flame_y + 34 < y < flame_y + 150:  # the candle
                for x in range(fx - 13, fx + 14):
                    pixels[x] = (236, 228, 210)
            dy = (y - flame_y) / 44
            if abs(dy) < 1:  # the flame's glow
                for x in range(fx - 18, fx + 19):
                    dx = (x - fx) / 18
                    glow = max(0.0, 1 - (dx * dx + dy * dy) ** 0.5)
                    red, green, blue = pixels[x]
                    pixels[x] = (
                        min(255, int(red + 240 * glow)),
                        min(255, int(green + 190 * glow)),
                        min(255, int(blue + 60 * glow)),
                    )
        rows.append(b"\x00" + bytes(channel for pixel in pixels for channel in pixel))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


def demo_blocks(spec_blocks, banner_src):
    """Return a demo newsletter's blocks, clean, with `banner_src` as its picture."""
    blocks = []
    for position, block in enumerate(spec_blocks, start=1):
        block = {**block, "id": f"d{position}"}
        if block["type"] == "image" and not block["src"]:
            block["src"] = banner_src
        blocks.append(block)
    return clean_blocks(blocks)


def demo_newsletters(*, seed: int = 2026) -> dict:
    """Create the demo newsletters (once); return how many mailings now exist."""
    rng = random.Random(seed)
    interests = {i.slug: i for i in CampaignInterest.objects.all()}
    demo_template()
    banner_src = demo_banner_src()
    for spec in NEWSLETTERS:
        if Mailing.objects.filter(name=spec["name"]).exists():
            continue
        with transaction.atomic():
            mailing = Mailing.objects.create(
                name=spec["name"],
                subject=spec["subject"],
                preheader=spec["preheader"],
                blocks=demo_blocks(spec["blocks"], banner_src),
                in_archive=spec.get("in_archive", False),
            )
            mailing.interests.set([interests[s] for s in spec["interests"] if s in interests])
            if "scheduled_in" in spec:
                Mailing.objects.filter(pk=mailing.pk).update(
                    status=Mailing.Status.SCHEDULED,
                    scheduled_at=timezone.now() + spec["scheduled_in"],
                )
        if "sent_ago" in spec:
            _sent_with_report(mailing, timezone.now() - spec["sent_ago"], rng)
    return {"mailings": Mailing.objects.count()}


def _sent_with_report(mailing, started, rng):
    """Record `mailing` as sent at `started` to its audience, with what came back."""
    supporters = list(mailing.audience().only("id"))
    deliveries = []
    events = []
    for supporter in supporters:
        sent_at = started + datetime.timedelta(seconds=rng.uniform(0, 90))
        delivery = Delivery(
            mailing=mailing,
            supporter_id=supporter.pk,
            status=Delivery.Status.SENT,
            attempts=1,
            esp_message_id=str(uuid.UUID(int=rng.getrandbits(128))),
            sent_at=sent_at,
            created_at=started,
        )
        roll = rng.random()
        if roll < 0.012:
            delivery.bounced_at = sent_at + datetime.timedelta(seconds=rng.uniform(5, 600))
        else:
            delivery.delivered_at = sent_at + datetime.timedelta(seconds=rng.uniform(2, 120))
            if rng.random() < 0.42:
                # Opens tail off over two days.
                opened = delivery.delivered_at + datetime.timedelta(
                    hours=min(47.5, rng.expovariate(1 / 6))
                )
                delivery.opened_at = delivery.last_opened_at = opened
                if rng.random() < 0.2:
                    delivery.clicked_at = delivery.last_clicked_at = opened + datetime.timedelta(
                        seconds=rng.uniform(10, 300)
                    )
        deliveries.append(delivery)
    Delivery.objects.bulk_create(deliveries, batch_size=5_000)
    links = [
        "https://example.org/un/protection-of-civilians-debate",
        "https://example.org/un/protection-of-civilians-debate",
        "https://example.org/r2p/what-is-r2p",
    ]
    for delivery in deliveries:
        for kind, when in (
            ("delivered", delivery.delivered_at),
            ("bounced", delivery.bounced_at),
            ("opened", delivery.opened_at),
            ("clicked", delivery.clicked_at),
        ):
            if when:
                events.append(
                    DeliveryEvent(
                        delivery=delivery,
                        mailing=mailing,
                        esp_name="Postmark",
                        dedupe_key=f"demo:{delivery.pk}:{kind}",
                        event_type=kind,
                        timestamp=when,
                        url=rng.choice(links) if kind == "clicked" else "",
                    )
                )
    DeliveryEvent.objects.bulk_create(events, batch_size=5_000)
    # What those events did to supporters: the services record consent and
    # suppression exactly as the webhooks would.
    bounced = [d for d in deliveries if d.bounced_at][:20]
    for delivery in bounced:
        supporter_mark_undeliverable(
            supporter=Supporter(pk=delivery.supporter_id),
            status=Supporter.Status.BOUNCED,
            method=ConsentRecord.Method.BOUNCE,
            mailing=mailing,
            actor_label="demo data",
        )
    leavers = [d for d in deliveries if d.opened_at and not d.bounced_at]
    for delivery in rng.sample(leavers, min(len(leavers), 12)):
        supporter_unsubscribe(
            supporter=Supporter(pk=delivery.supporter_id),
            interest=mailing.interests.order_by("position").first(),
            method=ConsentRecord.Method.ONE_CLICK,
            mailing=mailing,
            actor_label="demo data",
        )
    Mailing.objects.filter(pk=mailing.pk).update(
        status=Mailing.Status.SENT,
        started_at=started,
        finished_at=started + datetime.timedelta(minutes=2),
        recipient_count=len(deliveries),
        audience_seconds=0.1,
    )
    # The figures the mailing list shows, as sending's end would count them.
    reports.stats_refresh(mailing)
