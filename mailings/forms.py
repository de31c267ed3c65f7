"""Forms for the public supporter pages (templates lay their fields out by hand, for
accessibility) and the admin's test send."""

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from mailings.selfservice import public_interests
from mailings.services import refused_for_test_send


class InterestsField(forms.ModelMultipleChoiceField):
    def __init__(self, **kwargs):
        super().__init__(
            queryset=public_interests(),
            to_field_name="slug",
            widget=forms.CheckboxSelectMultiple,
            **kwargs,
        )


class DetailsMixin(forms.Form):
    first_name = forms.CharField(max_length=100, required=False, strip=True)
    last_name = forms.CharField(max_length=100, required=False, strip=True)
    postcode = forms.CharField(max_length=16, required=False, strip=True)

    def clean_postcode(self):
        return " ".join(self.cleaned_data["postcode"].upper().split())


EMAIL_ERRORS = {
    "required": "Enter your email address.",
    "invalid": "Enter an email address like name@example.org.",
}


class SignupForm(DetailsMixin):
    email = forms.EmailField(max_length=254, error_messages=EMAIL_ERRORS)
    interests = InterestsField(
        error_messages={"required": "Choose at least one topic to hear about."}
    )
    # Honeypot: hidden from people by CSS and from assistive technology, so
    # only a robot fills it in.
    website = forms.CharField(required=False)

    def is_robot(self) -> bool:
        return bool(self.data.get("website"))


class LinkRequestForm(forms.Form):
    email = forms.EmailField(max_length=254, error_messages=EMAIL_ERRORS)


class PreferencesForm(DetailsMixin):
    interests = InterestsField(required=False)


class TestSendForm(forms.Form):
    """Who gets a test send, and whose details are merged into it."""

    MAX_EXTRA = 4

    also_to = forms.CharField(
        label="Also send to",
        required=False,
        help_text=(
            f"Up to {MAX_EXTRA} more addresses, one per line. A test may carry a supporter's "
            "details, so it goes only to staff accounts' addresses and to those the site "
            "allows in RALLY_TEST_SEND_ALLOWED (add your Gmail and Outlook test accounts there "
            "to see how the email looks in them)."
        ),
        widget=forms.Textarea(attrs={"rows": 2, "cols": 40}),
    )
    supporter = forms.CharField(
        label="Merge fields for",
        required=False,
        help_text="A supporter's email address or number; empty uses a made-up sample.",
    )

    def clean_also_to(self):
        addresses = self.cleaned_data["also_to"].split()
        if len(addresses) > self.MAX_EXTRA:
            raise ValidationError(f"Up to {self.MAX_EXTRA} extra addresses, please.")
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError(f"“{address}” is not an email address.") from None
        refused = refused_for_test_send(addresses)
        if refused:
            raise ValidationError(
                f"Not sent: {', '.join(refused)} "
                f"{'is not a staff address' if len(refused) == 1 else 'are not staff addresses'}"
                " or allowed for tests (RALLY_TEST_SEND_ALLOWED)."
            )
        return addresses
