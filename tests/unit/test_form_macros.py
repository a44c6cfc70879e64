"""templates/_forms.html: a field's error is tied to it (aria-invalid,
aria-describedby, its message) and repeated near the button; the other
fields stay untouched (issue 16, defect 1)."""

from __future__ import annotations

from coffre.http.web.templating import TEMPLATES

PAGE = TEMPLATES.env.from_string(
    '{% import "_forms.html" as forms %}'
    '{{ forms.field("email", "Adresse", id="f-email", value=email, error=error, type="email",'
    ' hint="Par exemple a@b.fr", attrs={"required": true, "maxlength": 254, "x": none}) }}'
    '{{ forms.field("name", "Nom", error=error) }}'
    '{{ forms.summary(error) }}')


def test_a_field_error_is_next_to_its_field_and_near_the_button() -> None:
    html = PAGE.render(email='<x@y>"', error=("email", "Adresse <non> valide"))
    assert ('<input id="f-email" name="email" type="email" value="&lt;x@y&gt;&#34;" required '
            'maxlength="254" aria-describedby="f-email-hint f-email-error" aria-invalid="true">'
            in html)
    assert '<p class="error field-error" id="f-email-error">Adresse &lt;non&gt; valide</p>' in html
    assert '<input id="name" name="name" type="text" value="">' in html  # untouched
    assert ('<div class="form-summary" id="form-summary" role="alert" data-form-summary>'
            '<p class="error">Adresse &lt;non&gt; valide</p></div>' in html)


def test_a_form_error_is_near_the_button_only() -> None:
    html = PAGE.render(email="", error="Trop de tentatives")
    assert "aria-invalid" not in html
    assert "field-error" not in html
    assert '<p class="error">Trop de tentatives</p></div>' in html


def test_no_error_leaves_an_empty_live_region() -> None:
    html = PAGE.render(email="", error=None)
    assert "aria-invalid" not in html
    assert 'data-form-summary></div>' in html
