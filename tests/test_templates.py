"""Templates: parsing, validation, rendering, HTML escaping, SMS length."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import Invalid
from core.templates import (
    BUILTIN_VARIABLES,
    build_context,
    check_template,
    check_variable_names,
    render,
    render_html,
    sms_length,
)

CONTEXT = build_context(customer_name="Ana María López", business_name="Bella & Co <Salon>",
                        agent_name="Ava", service_type=None,
                        last_visit=datetime(2025, 3, 3, 22, 0, tzinfo=UTC), timezone="America/New_York",
                        unsubscribe_url="https://x.example/unsubscribe/tok", variables={"promotion": "20% off"})


def test_render_fills_variables_and_fallbacks():
    text = render("Hi {first_name}, {service_type|your visit} on {last_visit_date} at {business_name}: {promotion}",
                  CONTEXT)
    assert text == "Hi Ana, your visit on March 3, 2025 at Bella & Co <Salon>: 20% off"


def test_missing_value_without_fallback_is_empty():
    assert render("[{service_type}]", CONTEXT) == "[]"


def test_spaces_inside_braces_are_allowed():
    assert render("{ first_name | friend }", CONTEXT) == "Ana"


def test_unknown_variable_is_refused_naming_it():
    with pytest.raises(Invalid) as err:
        check_template("Hi {frist_name}, {promotion}", field="message_template", extra_variables=["promotion"])
    assert err.value.field == "message_template"
    assert "{frist_name}" in err.value.message
    assert "{first_name}" in err.value.message  # says what is known


def test_campaign_variables_are_known():
    assert check_template("{promotion|a treat}", field="x", extra_variables={"promotion": "1"}) == ["promotion"]


@pytest.mark.parametrize("template", ["Hi {first_name", "Hi first_name}", "{{first_name}}", "{}", "{ }",
                                      "{1abc}", "{first name}", "50% {off"])
def test_stray_braces_are_refused(template):
    with pytest.raises(Invalid) as err:
        check_template(template, field="call_script")
    assert err.value.field == "call_script"
    assert "placeholder" in err.value.message


@pytest.mark.parametrize(("variables", "field"), [
    ({"first_name": "x"}, "variables.first_name"),
    ({"has space": "x"}, "variables.has space"),
    ({"ok": {"nested": 1}}, "variables.ok"),
    ({"ok": True}, "variables.ok"),
])
def test_variable_names_are_checked(variables, field):
    with pytest.raises(Invalid) as err:
        check_variable_names(variables)
    assert err.value.field == field


def test_html_escapes_values_and_text_and_links_urls():
    html = render_html("Hello {customer_name} from {business_name}\n\nBook: https://book.example/x?a=1&b=2\n"
                       "Line two\n\n<b>not bold</b>", CONTEXT)
    assert "Bella &amp; Co &lt;Salon&gt;" in html
    assert "<b>" not in html and "&lt;b&gt;not bold&lt;/b&gt;" in html
    assert '<a href="https://book.example/x?a=1&amp;b=2">https://book.example/x?a=1&amp;b=2</a>' in html
    assert html.count("<p>") == 3 and "<br>" in html


def test_html_link_rewriter_is_used_for_tracking():
    html = render_html("Go to https://book.example/now.", CONTEXT, link=lambda url: "https://t.example/c?u=" + url)
    assert 'href="https://t.example/c?u=https://book.example/now"' in html  # sentence dot not in the link


def test_values_cannot_inject_placeholders():
    ctx = build_context(customer_name="{unsubscribe_url} Eve", business_name="B")
    assert render("Hi {customer_name}", ctx) == "Hi unsubscribe_url Eve"


def test_sms_length_and_segments():
    assert sms_length("hello") == sms_length("hello")
    assert (sms_length("a" * 160).segments, sms_length("a" * 161).segments) == (1, 2)
    assert sms_length("a" * 306).segments == 2 and sms_length("a" * 307).segments == 3
    assert sms_length("{" * 80).segments == 1  # GSM-7 extension characters count twice
    uni = sms_length("Olá 👋" + "x" * 66)
    assert uni.encoding == "UCS-2" and uni.segments == 2
    assert sms_length("").segments == 0


# --- properties -------------------------------------------------------------------------------

names = st.sampled_from([*BUILTIN_VARIABLES, "promotion"])
plain = st.text(alphabet=st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)), max_size=30)
fallbacks = st.none() | st.text(alphabet=st.characters(blacklist_characters="{}|", blacklist_categories=("Cs",)),
                                max_size=10)
values = st.none() | st.text(max_size=20) | st.integers()


@st.composite
def templates(draw):
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        parts.append(draw(plain))
        name, fallback = draw(names), draw(fallbacks)
        parts.append("{" + name + ("" if fallback is None else "|" + fallback) + "}")
    parts.append(draw(plain))
    return "".join(parts)


@given(templates(), st.dictionaries(names, values))
def test_valid_templates_render_without_any_brace(template, ctx):
    check_template(template, field="t", extra_variables=["promotion"])
    out = render(template, ctx)
    assert "{" not in out and "}" not in out
    html = render_html(template, ctx)
    assert "{" not in html and "}" not in html


@given(plain)
def test_text_without_placeholders_renders_unchanged(text):
    assert render(text, {}) == text


@given(st.text(max_size=60))
def test_any_text_is_either_refused_or_rendered_brace_free(text):
    try:
        check_template(text, field="t", extra_variables=["promotion"])
    except Invalid:
        return
    assert not re.search(r"[{}]", render(text, CONTEXT))


@given(templates(), st.text(max_size=20))
def test_fallback_used_only_when_value_missing(template, value):
    ctx = {"first_name": value}
    out = render("{first_name|FB}", ctx)
    cleaned = value.replace("{", "").replace("}", "").strip()
    assert out == (cleaned or "FB")
