"""Forms for the public supporter pages. Templates lay the fields out by hand for accessibility."""

from django import forms

from mailings.selfservice import public_interests


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
