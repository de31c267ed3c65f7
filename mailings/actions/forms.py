"""The signing form on an action page (its template lays the fields out by hand)."""

from django import forms
from django_countries import countries

from mailings.actions.models import FIELDS
from mailings.forms import EMAIL_ERRORS

LABELS = {**FIELDS, "phone": "Phone number"}


def country_choices():
    return [("", "Choose…"), *countries]


REQUIRED_ERRORS = {
    "first_name": "Enter your first name.",
    "last_name": "Enter your last name.",
    "postcode": "Enter your postcode.",
    "country": "Choose your country.",
    "phone": "Enter your phone number.",
}


class SignForm(forms.Form):
    email = forms.EmailField(max_length=254, error_messages=EMAIL_ERRORS)
    first_name = forms.CharField(max_length=100, strip=True)
    last_name = forms.CharField(max_length=100, strip=True)
    postcode = forms.CharField(max_length=16, strip=True)
    # Checked against the list in clean_country: a ChoiceField would copy all
    # 250 countries for every form, read or not (a measurable cost per signature).
    country = forms.CharField(max_length=2, required=False)
    phone = forms.CharField(max_length=32, strip=True, required=False)
    opt_in = forms.BooleanField(required=False)
    partners = forms.MultipleChoiceField(required=False)
    source = forms.CharField(max_length=100, required=False)
    wording_version = forms.CharField(max_length=64, required=False)
    # Honeypot: hidden from people by CSS and from assistive technology.
    website = forms.CharField(required=False)

    def __init__(self, *args, action, **kwargs):
        super().__init__(*args, **kwargs)
        asked = action.asked()
        for name in FIELDS:
            if name not in asked:
                del self.fields[name]
            elif name in ("first_name", "last_name", "postcode"):
                self.fields[name].required = True
                self.fields[name].error_messages["required"] = REQUIRED_ERRORS[name]
        self.fields["partners"].choices = [
            (cosponsor.partner.slug, cosponsor.partner.name) for cosponsor in action.cosponsors_list
        ]

    def clean_country(self):
        code = self.cleaned_data["country"].strip().upper()
        if code and code not in dict(countries):
            raise forms.ValidationError("Choose your country from the list.")
        return code

    def clean_postcode(self):
        return " ".join(self.cleaned_data["postcode"].upper().split())

    def is_robot(self) -> bool:
        return bool(self.data.get("website"))
