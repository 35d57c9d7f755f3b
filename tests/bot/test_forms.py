"""GRACE's form decoding gives exactly what `parse_qsl` gives, on any text."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, quote_plus, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.forms import MAX_FIELDS, TooManyFields, form_pairs

# Text rich in what matters to a form: separators, escapes good and bad, backslashes.
_ESCAPES = ["%", "%%", "%2", "%22", "%3D", "%25", "%e2%82%ac", "%C3", "%zz", "%\n", "%\r\n"]
_PIECES = st.sampled_from([*_ESCAPES, "&", "=", "+", " ", "\t", "\n", "_", "\\", "\\x41"])
_FORMISH = st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=30).map("".join)


def _reference(text: str) -> list[tuple[str, str]]:
    return parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)


@given(_FORMISH)
def test_any_text_decodes_as_parse_qsl_decodes_it(text):
    assert form_pairs(text) == _reference(text)


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=40), max_size=6))
def test_what_a_form_encoder_wrote_is_read_back(fields):
    text = urlencode(fields)
    assert form_pairs(text) == _reference(text) == list(fields.items())


def test_a_click_s_payload_is_its_json():
    payload = {"type": "block_actions", "user": {"id": "U1"}, "text": '€ 100% \\ "quoted" +1'}
    text = "payload=" + quote_plus(json.dumps(payload))
    [(name, value)] = form_pairs(text)
    assert name == "payload" and json.loads(value) == payload


def test_more_fields_than_any_slack_form_are_refused_as_parse_qsl_refuses_them():
    assert len(form_pairs("a=1&" * (MAX_FIELDS - 1) + "b=2")) == MAX_FIELDS
    with pytest.raises(TooManyFields):
        form_pairs("a=1&" * MAX_FIELDS + "b=2")
    with pytest.raises(ValueError):
        _reference("a=1&" * MAX_FIELDS + "b=2")
