import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from crm.models import Supporter
from crm.services import supporter_create, supporter_get

pytestmark = pytest.mark.django_db


def test_database_refuses_same_email_in_another_case():
    """The unique constraint is on the lower-cased address, in the database itself."""
    Supporter.objects.create(email="Jane.Doe@Example.org")
    with pytest.raises(IntegrityError), transaction.atomic():
        Supporter.objects.create(email="jane.doe@example.ORG")


def test_database_refuses_untrimmed_email():
    with pytest.raises(IntegrityError), transaction.atomic():
        Supporter.objects.create(email=" jane@example.org")


def test_create_reports_duplicate_with_spaces_and_case_clearly():
    supporter_create(email="jane@example.org")
    with pytest.raises(ValidationError, match="already exists"):
        supporter_create(email="  JANE@example.org ")
    assert Supporter.objects.count() == 1


def test_create_rejects_malformed_email():
    with pytest.raises(ValidationError, match="valid email"):
        supporter_create(email="jane@@example")
    assert Supporter.objects.count() == 0


def test_create_rejects_unknown_country():
    with pytest.raises(ValidationError, match="not a valid choice"):
        supporter_create(email="jane@example.org", country="XX")
    assert Supporter.objects.count() == 0


def test_lookup_ignores_case_and_spaces():
    jane = supporter_create(email="Jane@Example.org")
    assert supporter_get("  jane@EXAMPLE.org ") == jane
    assert supporter_get("john@example.org") is None
