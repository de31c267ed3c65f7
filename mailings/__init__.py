"""
Newsletters: composed and sent by staff, handed to the ESP through Anymail,
tracked back through its webhooks, and managed by supporters from their links.

Sending (docs/sending.md)

    models.py       Mailing, Delivery (one per recipient, unique), tracking events
    services.py     the mailing's status workflow, test sends, its part of GDPR
    sending/        audience.py (queue Delivery rows) -> claims.py (lease them) ->
                    esp_calls.py (render, call the ESP, record) -> batches.py (the task's
                    loop); sweeper.py puts sending back on track from database state
    throttle.py     the send rate shared by every worker, and the ESP-outage hold-back
    emails.py       building each message (merge fields, List-Unsubscribe headers)
    esp.py          what differs between ESPs, as lookup tables
    tasks.py        every Celery task of the app: thin, taking ids
    sql.py          every raw statement of the app (link reads, claims, tracking
                    writes), names from _meta; in_use() picks the claim's ORM twin

Tracking (ESP -> Rally)

    webhooks.py     Anymail's tracking views, each wrapped: size, auth, 4xx for junk
    receivers.py    Anymail's tracking signal -> tracking.py
    tracking.py     events recorded by the request, applied by a worker (suppression,
                    consent withdrawal through crm.services)
    engagement.py, segments.py   opens and clicks as segment rules (registered in crm)

Supporters (docs/self-service.md)

    views.py, urls.py, forms.py, home.py   the public pages
    selfservice.py  writes behind them (through crm.services)
    tokens.py       signed links, one salt per purpose
    notices.py      the one-person emails: confirmation, "your link", "your data"
    ratelimit.py    the public forms' limits

Staff

    admin.py        compose, preview, test-send, send or schedule, progress, report
    reports.py      figures for a mailing's page, report and the mailing list (Mailing.stats)
    report_people.py  the report's lists of people, made into static segments or CSV files
    timeline.py     what a supporter was sent and did with it, for crm's timeline and page
    demo.py         demo newsletters; manage.py seed_demo loads them with crm's demo data
"""
