"""
Demo newsletters about the campaign's real subjects: two drafts ready to
preview and test-send, one scheduled, and one already sent with a report
(deliveries, a few bounces and unsubscribes, opens and clicks over two days).

Written with bulk inserts, so 100,000 demo supporters add seconds, not
minutes. Links point at example.org, and every demo address is at
example.org too, so nothing here can reach a real person.
"""

import datetime
import random
import uuid

from django.db import transaction
from django.utils import timezone

from crm.models import CampaignInterest, ConsentRecord, Supporter
from crm.services import supporter_mark_undeliverable, supporter_unsubscribe
from mailings import reports
from mailings.models import Delivery, DeliveryEvent, Mailing

DUTY_TO_PREVENT = """\
<h1>Dear {{ first_name|default:"friend" }},</h1>
<p>Genocide and mass atrocities never come out of nowhere. They follow warning signs that can be seen months, sometimes years, ahead: hate speech against a minority, people stripped of their rights, armed groups recruiting, the rule of law breaking down. When the world says &ldquo;never again&rdquo; and it happens again, it is because those signs were missed, or seen and ignored.</p>
<p>The United Kingdom has signed up, with every member of the United Nations, to the <strong>Responsibility to Protect</strong>: the promise that every state protects its people from genocide, war crimes, ethnic cleansing and crimes against humanity, and that other countries help when it cannot or will not.</p>
<h2>What prevention looks like</h2>
<ul>
  <li>Early warning that reaches ministers while there is still time to act.</li>
  <li>Diplomats, aid and sanctions ready to use <em>before</em> violence starts.</li>
  <li>Justice for survivors, so that those who plan atrocities know they will answer for them.</li>
</ul>
<p>Preventing atrocities costs a fraction of what conflict, refugee crises and rebuilding cost, and it saves lives. It needs a government that treats prevention as a duty, not an afterthought.</p>
<p class="button"><a href="https://example.org/briefings/uk-duty-to-prevent">Read our two-page briefing</a></p>
<p>Thank you for standing with us,<br>The campaign team</p>
"""  # noqa: E501 - one line per paragraph, as staff would write it

WRITE_TO_YOUR_MP = """\
<h1>{{ first_name|default:"Friend" }}, will you write to your MP?</h1>
<p>The UK still has no cross-government strategy for preventing atrocities. Departments work on early warning, aid and diplomacy separately, and nobody is in charge of joining them up. A strategy would change that: one plan, one minister responsible, and a report to Parliament every year on what was done.</p>
<p>MPs tell us that letters from their own constituents are what make them act. It takes five minutes:</p>
<ol>
  <li>Find your MP from your postcode ({{ postcode|default:"you will need it" }}).</li>
  <li>Use our suggested letter, and add a line about why this matters to you.</li>
  <li>Ask your MP to write to the Foreign Secretary and to raise the strategy in Parliament.</li>
</ol>
<p class="button"><a href="https://example.org/act/write-to-your-mp">Write to your MP now</a></p>
<p>If your MP replies, please forward the answer to us: it helps us see who is listening.</p>
<p>With thanks,<br>The campaign team</p>
"""  # noqa: E501 - one line per paragraph, as staff would write it

SECURITY_COUNCIL = """\
<h1>Inside this week's Security Council debate</h1>
<p>Dear {{ first_name|default:"friend" }},</p>
<p>This week the UN Security Council held its open debate on the protection of civilians in armed conflict. Member states heard from UN officials and civil society about civilians caught up in conflicts around the world, and about the gap between the promises made in New York and what happens on the ground.</p>
<h2>What the UK said</h2>
<p>The UK, as one of the Council's permanent members, spoke about accountability for attacks on civilians and humanitarian workers. We welcome that, and we will keep asking ministers to match their words with action: early warning, support for local peacebuilders, and a willingness to act before violence escalates.</p>
<h2>What happens next</h2>
<p>Our partners in the Responsibility to Protect network will follow up with the UK mission to the UN. We will report back on what they hear, and on how you can help.</p>
<p><a href="https://example.org/un/protection-of-civilians-debate">Read our summary of the debate</a> &middot; <a href="https://example.org/r2p/what-is-r2p">What is the Responsibility to Protect?</a></p>
<p>The campaign team</p>
"""  # noqa: E501 - one line per paragraph, as staff would write it

NEWSLETTERS = [
    {
        "name": "Duty to prevent: autumn briefing",
        "subject": "The UK's duty to prevent atrocities",
        "preheader": "Why prevention comes first, and what the UK has promised.",
        "body_html": DUTY_TO_PREVENT,
        "interests": ["atrocity-prevention", "r2p"],
    },
    {
        "name": "MP letters: atrocity-prevention strategy",
        "subject": '{{ first_name|default:"Friend" }}, five minutes to write to your MP',
        "preheader": "Ask your MP to back a UK atrocity-prevention strategy.",
        "body_html": WRITE_TO_YOUR_MP,
        "interests": ["atrocity-prevention", "events"],
        "scheduled_in": datetime.timedelta(days=7),
    },
    {
        "name": "UN Security Council: protection of civilians debate",
        "subject": "Inside this week's UN Security Council debate",
        "preheader": "What the UK said, and what happens next.",
        "body_html": SECURITY_COUNCIL,
        "interests": ["un-security-council", "r2p"],
        "sent_ago": datetime.timedelta(days=3),
    },
]


def demo_newsletters(*, seed: int = 2026) -> dict:
    """Create the demo newsletters (once); return how many mailings now exist."""
    rng = random.Random(seed)
    interests = {i.slug: i for i in CampaignInterest.objects.all()}
    for spec in NEWSLETTERS:
        if Mailing.objects.filter(name=spec["name"]).exists():
            continue
        with transaction.atomic():
            mailing = Mailing.objects.create(
                name=spec["name"],
                subject=spec["subject"],
                preheader=spec["preheader"],
                body_html=spec["body_html"],
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
