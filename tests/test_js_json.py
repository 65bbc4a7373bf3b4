"""NOWPayments' signature text: JSON as JavaScript writes it (reseller.gateways.js_json),
checked against a table of JavaScript's own answers and, where node is installed, against
NOWPayments' documented Node code over many generated payloads."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from reseller.gateways import js_json
from reseller.gateways.base import BadSignature, MalformedNotification
from reseller.gateways.nowpayments import NowPayments, sorted_json
from tests.fake_gateways import NODE, node_nowpayments_signatures

# JSON number text → what JSON.stringify(JSON.parse(text)) writes (from node 18+).
JS_NUMBERS = [
    ("0.00008338", "0.00008338"),
    ("8.338e-05", "0.00008338"),
    ("0.000001", "0.000001"),
    ("1e-6", "0.000001"),
    ("0.0000001", "1e-7"),
    ("1e-7", "1e-7"),
    ("-1.5e-7", "-1.5e-7"),
    ("2.5e-6", "0.0000025"),
    ("123e-20", "1.23e-18"),
    ("5e-324", "5e-324"),
    ("0.30000000000000004", "0.30000000000000004"),
    ("0.1", "0.1"),
    ("30.0", "30"),
    ("-30.50", "-30.5"),
    ("100", "100"),
    ("0", "0"),
    ("-0", "0"),
    ("-0.0", "0"),
    ("1e16", "10000000000000000"),
    ("1e20", "100000000000000000000"),
    ("123456789012345678000", "123456789012345680000"),
    ("1e21", "1e+21"),
    ("999999999999999999999", "1e+21"),
    ("1.5e300", "1.5e+300"),
    ("-2.5e+25", "-2.5e+25"),
    ("1.7976931348623157e308", "1.7976931348623157e+308"),
    ("9007199254740993", "9007199254740992"),
    ("12345678901234567890", "12345678901234567000"),
    ("123456789.123456789", "123456789.12345679"),
    ("4409701815", "4409701815"),
    ("1e400", "null"),
    ("-1" + "0" * 400, "null"),
]


@pytest.mark.parametrize("text, expected", JS_NUMBERS)
def test_numbers_are_written_as_javascript_writes_them(text, expected):
    assert js_json.number(json.loads(text)) == expected


def test_text_keys_and_arrays_are_written_as_the_documented_node_code_writes_them():
    data = json.loads(
        '{"b": "caf\\u00e9 \\u2028\\u007f \\"q\\" \\\\ \\n\\u0001", "a": [2, {"y": 1, "x": 0.0}],'
        ' "10": 1, "9": 2, "\\ud83d\\ude00": "\\ud800", "\\uff61": 3, "__proto__": 4, "c": null}'
    )
    rest = '"b":"café \u2028\x7f \\"q\\" \\\\ \\n\\u0001","c":null,"😀":"\\ud800","｡":3}'
    documented = '{"9":2,"10":1,"a":{"0":2,"1":{"x":0,"y":1}},' + rest
    kept = '{"9":2,"10":1,"a":[2,{"x":0,"y":1}],' + rest
    assert sorted_json(data) == [documented, kept]
    # U+1F600 (surrogates D83D DE00) sorts before U+FF61 in UTF-16, after it by code point.
    assert sorted_json({"a": 1}) == ['{"a":1}']


JSON_NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e-3, max_value=1e-3, allow_nan=False),
    st.floats(min_value=1e15, max_value=1e23),
    st.integers(min_value=-(10**25), max_value=10**25),
    st.decimals(min_value=0, max_value=1, places=12, allow_nan=False).map(float),
)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), JSON_NUMBERS, st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
PAYLOADS = st.fixed_dictionaries(
    {
        "payment_id": st.integers(min_value=1, max_value=10**10),
        "invoice_id": st.integers(min_value=1, max_value=10**10),
        "payment_status": st.sampled_from(["waiting", "partially_paid", "finished", "failed"]),
        "pay_amount": JSON_NUMBERS,
        "actually_paid": JSON_NUMBERS,
        "outcome_amount": JSON_NUMBERS,
        "price_amount": JSON_NUMBERS,
    },
    optional={"extra": JSON_VALUES, "order_description": st.text(max_size=20)},
)


@pytest.mark.skipif(NODE is None, reason="node is not installed")
@hypothesis_settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.large_base_example]
)
@given(payloads=st.lists(PAYLOADS, min_size=50, max_size=50))
def test_signatures_agree_with_nowpayments_documented_node_code(payloads):
    secret = "np-ipn-secret"
    gateway = NowPayments("key", secret)
    bodies = [json.dumps(p).encode() for p in payloads]
    for body, signature in zip(bodies, node_nowpayments_signatures(secret, bodies), strict=True):
        ours = hmac.new(
            secret.encode(), sorted_json(json.loads(body))[0].encode(), hashlib.sha512
        ).hexdigest()
        assert ours == signature, body
        event = gateway.verify_notification(body, {"x-nowpayments-sig": signature})
        assert event.reference == str(json.loads(body)["payment_id"])


def test_javascript_constants_are_not_json():
    gateway = NowPayments("key", "secret")
    for body in (b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}'):
        with pytest.raises(MalformedNotification):
            gateway.verify_notification(body, {"x-nowpayments-sig": "00"})
    with pytest.raises(BadSignature):
        gateway.verify_notification(b'{"a": 1}', {"x-nowpayments-sig": "00"})
