"""The Anymail methods mailings/webhooks.py relies on are the ones it was written against.

The webhook wrapper overrides nothing of Anymail's, but it reads what some of
its methods do: a failure raised inside the basic-auth check answers 401, a
missing setting raised while the validators run answers 404 (elsewhere, 400),
every event of a request goes through the tracking signal after the
validators and the parser, and `basic_auth` holds the secrets. A new Anymail
release that changes one of these methods fails this test, naming what to
re-check before the recorded hash is updated.
"""

import hashlib
import inspect

import pytest
from anymail.webhooks.base import AnymailBasicAuthMixin, AnymailCoreWebhookView

PINNED = {
    AnymailBasicAuthMixin.validate_request: (
        "3932391703401b19f7d3366fa0d7a5a81c7af2573cb3109e6cc567fda7cdd6b6",
        "wrong credentials still raise AnymailWebhookValidationFailure inside this method "
        "(mailings.webhooks.BASIC_AUTH_CHECK answers them 401)",
    ),
    AnymailBasicAuthMixin.__init__: (
        "026428f7988909208599d1b346884d98bbdd991de7e1c4e17c0eba01bc9942a8",
        "the secrets are still read into `basic_auth`, a list, empty when unset "
        "(mailings.webhooks._refusal reads it for the 403 and the 401 challenge)",
    ),
    AnymailCoreWebhookView.run_validators: (
        "ef6c958478eefe383e1205df470a6e5225e6c919f99ba65b1dc57dc17c6b8c0e",
        "the validators still run inside this method, so a missing setting they read "
        "(Mandrill's webhook key) is told from a parse error (mailings.webhooks.VALIDATORS)",
    ),
    AnymailCoreWebhookView.post: (
        "96c9cb5996e9b68175c4f28613e58bd14416c08ca61b0f578464c08ec14f6b89",
        "post() still validates, parses every event, then sends each through the tracking "
        "signal with .send() (not send_robust), so mailings.receivers can refuse junk with "
        "UnreadablePayload before anything is recorded",
    ),
}


@pytest.mark.parametrize("method", list(PINNED), ids=lambda method: method.__qualname__)
def test_anymail_webhook_method_is_the_one_the_wrapper_was_written_against(method):
    recorded, what_to_check = PINNED[method]

    found = hashlib.sha256(inspect.getsource(method).encode()).hexdigest()

    assert found == recorded, (
        f"Anymail's {method.__qualname__} changed. Check that {what_to_check}; "
        "run tests/security/test_webhook_auth.py and test_unconfigured_esp_webhooks.py, "
        f"then record the new hash {found}."
    )
