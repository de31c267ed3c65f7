"""
The CRM: supporters, campaign interests, partner organisations, segments,
consent, the suppression list and the audit trail.

Reads and writes

    models.py       the tables, their constraints and QuerySets (every read starts here)
    services/       every write: supporters.py, consent.py (Subscription, ConsentRecord,
                    Suppression, with their AuditEvent in the same transaction; one
                    supporter, staff bulk actions, an import's grants and its revert),
                    gdpr.py (data export, erasure), segments.py, audit.py (AuditEvent)
    imports/        partner list imports: files -> columns -> rows -> plan -> preview
                    -> confirm (writers.py bulk-inserts supporters and their history;
                    subscriptions and consent go through services) -> revert
    exports.py      lists out of Rally (CSV, XLSX) and the partner sync file
    segments.py     rule-based segments: validation and translation to one filter
    sql.py          every raw SQL statement (PostgreSQL), names from _meta; those that
                    write consent tables are run only by services/
    estimates.py    row counts from PostgreSQL's statistics for long lists
    timeline.py     a supporter's history, newest first, a page at a time (other apps
                    add their entries through extensions.py)

Interfaces

    admin/                    the staff admin (a package: supporters, segments, imports and exports)
    charts.py                 server-drawn SVG charts for staff pages, tables for screen readers
    resources.py              django-import-export declarations, handing work to imports/exports
    tasks.py                  Celery entry points (imports, their recovery, expiry; segment sizes)
    management/commands/      import_supporters, export_partner_sync, ensure_admin

Around it

    exceptions.py   RallyError, the root of every error Rally raises on purpose
    extensions.py   what other apps add (data export, erasure, segment rules and uses,
                    timeline entries, engagement figures), registered from their
                    AppConfig.ready(): crm imports no other app
    roles.py        staff roles as Django groups
    demo.py         demo supporters, interests and partners
"""
