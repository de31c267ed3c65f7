"""
The sending engine: resolve the audience, claim deliveries, send, record.

Every step works from database state, so any worker can pick up where a
dead one stopped, and the periodic sweeper can restart everything after
the broker lost its queue:

1. `mailing_resolve_audience` turns the audience into Delivery rows with one
   INSERT … SELECT (unique on mailing + supporter, so a repeat adds nothing).
2. `mailing_send_batches` (the task body) claims a batch of queued
   deliveries with a lease (SELECT … FOR UPDATE SKIP LOCKED on PostgreSQL),
   renders them, commits `dispatched_at` (renewing the lease, if still held),
   calls the ESP, and commits "sent" (or "failed", or back to "queued" with a
   retry time) straight after the call, reconnecting if the database
   connection was lost meanwhile. A task that stops before calling the ESP
   hands its claim back at once.
3. `deliveries_sweep` (Celery beat) hands expired leases back: never
   dispatched → queued again; dispatched → ask the ESP whether it accepted
   the message (esp.accepted_message_id) and mark it sent or queue it again,
   or mark it "unknown" when the ESP cannot say. It also restarts sending
   for mailings whose workers went quiet, and finishes mailings with nothing
   left to do.

docs/sending.md explains the one window that remains.

Modules, one job each:

- `audience.py`: step 1, and the statistics PostgreSQL needs around it.
- `claims.py`: leasing deliveries to a worker and handing them back; the
  reconnect-and-retry wrapper for writes that must land.
- `esp_calls.py`: rendering claimed deliveries, the ESP calls (batches, or
  one message per call with several in flight) and recording each result.
- `batches.py`: the sending task's loop (step 2), starting sending tasks,
  and marking a mailing sent once nothing is left.
- `sweeper.py`: step 3.

The throttle shared by every worker (send rate, 429 pauses, outages) is
mailings.throttle; the ESP lookup tables are mailings.esp.
"""

from mailings.sending.audience import (
    audience_tables_analyze,
    deliveries_analyze,
    mailing_resolve_audience,
)
from mailings.sending.batches import (
    RETRY_WAIT_MAX_SECONDS,
    mailing_enqueue_senders,
    mailing_finish_if_done,
    mailing_resume_in,
    mailing_send_batches,
)
from mailings.sending.claims import deliveries_claim, deliveries_release, worker_name
from mailings.sending.esp_calls import deliveries_send
from mailings.sending.sweeper import deliveries_recover, deliveries_sweep

__all__ = [
    "RETRY_WAIT_MAX_SECONDS",
    "audience_tables_analyze",
    "deliveries_analyze",
    "deliveries_claim",
    "deliveries_recover",
    "deliveries_release",
    "deliveries_send",
    "deliveries_sweep",
    "mailing_enqueue_senders",
    "mailing_finish_if_done",
    "mailing_resolve_audience",
    "mailing_resume_in",
    "mailing_send_batches",
    "worker_name",
]
