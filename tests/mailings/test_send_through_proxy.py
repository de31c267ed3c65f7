"""ESP calls honour the proxy settings of the environment, read once per kept-alive connection."""

from collections import Counter

import pytest

from mailings import sending, services, throttle

pytestmark = pytest.mark.django_db

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _no_proxy_from_the_test_run(monkeypatch, fresh_cache):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    throttle.clear()
    yield
    throttle.clear()


@pytest.fixture
def send(newsletter, subscribers, campaign_user, django_capture_on_commit_callbacks):
    def go():
        with django_capture_on_commit_callbacks(execute=False):
            services.mailing_send_now(mailing=newsletter, actor=campaign_user)
        services.mailing_start(mailing_id=newsletter.pk)
        return sending.mailing_send_batches(mailing_id=newsletter.pk)

    return go


def use_postmark(settings, *, token, api_url):
    # Each test its own token: a thread's connection is kept per ESP setting.
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": token, "POSTMARK_API_URL": api_url}
    settings.RALLY_BATCH_SEND = False


def test_esp_calls_go_through_the_proxy_the_environment_names(
    settings, esp, monkeypatch, send, subscribers
):
    """With HTTP_PROXY set, each message goes through the proxy (here the simulator itself,
    which answers absolute URLs), though the ESP's own host name does not resolve."""
    use_postmark(settings, token="through-proxy", api_url="http://esp.invalid/postmark/")
    monkeypatch.setenv("HTTP_PROXY", esp.url)

    assert send() == "idle"

    assert Counter(esp.recipients()) == Counter({s.email: 1 for s in subscribers})


def test_esp_host_in_no_proxy_is_called_directly(settings, esp, monkeypatch, send, subscribers):
    """A host NO_PROXY names is called directly, not through HTTP_PROXY (nothing listens there)."""
    use_postmark(settings, token="no-proxy", api_url=esp.postmark_api_url)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    assert send() == "idle"

    assert Counter(esp.recipients()) == Counter({s.email: 1 for s in subscribers})
