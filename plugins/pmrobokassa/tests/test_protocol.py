"""Tests of the pure Robokassa protocol layer (no network, no Flask).

The test vectors are the ones pinned in docs/robokassa.md §2.6; they were recomputed with hashlib.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from decimal import Decimal
from urllib.parse import parse_qs, quote_plus, urlencode

import pytest

from pmrobokassa import protocol as p

# Robokassa's Password#3 in the vectors is short; newer PyJWT warns about short HMAC keys.
pytestmark = pytest.mark.filterwarnings("ignore:The HMAC key is")

LOGIN, P1, P2, P3 = "demo", "password_1", "password_2", "password_3"

RECEIPT_JSON = (
    '{"sno":"usn_income","items":[{"name":"Hosting","quantity":1,"sum":100,'
    '"payment_method":"full_payment","payment_object":"service","tax":"none"}]}'
)
RECEIPT_ENCODED = (
    "%7B%22sno%22%3A%22usn_income%22%2C%22items%22%3A%5B%7B%22name%22%3A%22Hosting%22%2C%22quantity"
    "%22%3A1%2C%22sum%22%3A100%2C%22payment_method%22%3A%22full_payment%22%2C%22payment_object%22%3A"
    "%22service%22%2C%22tax%22%3A%22none%22%7D%5D%7D"
)
CYRILLIC_RECEIPT_JSON = '{"items":[{"name":"Хостинг VPS","quantity":1,"sum":250.5,"tax":"none"}]}'

REFUND_OPKEY = "0005F891-8CCD-434B-8455-816AFFFDBF37-0VOisWikFF"
REFUND_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJPcEtleSI6IjAwMDVGODkxLThDQ0QtNDM0Qi04NDU1LTgxNkFGRkZEQkYzNy0w"
    "Vk9pc1dpa0ZGIiwiUmVmdW5kU3VtIjoxLjB9.Lb_y1B_O24NoQAufLPNGpVgBlMmiIPxLesxlYA-7NDs"
)


# ------------------------------------------------------------------------------------------------
# §2.6: every string/hash pair, hashed directly
# ------------------------------------------------------------------------------------------------

MD5_VECTORS = [
    ("demo:100.00:12:password_1", "b29319bf6ad7ff85966d61d6df85ffef"),
    ("demo:100.00::password_1", "f269c85a0fce9f4c3d68c30398dfdcd1"),
    ("demo:100:12:password_1", "38e3ab3506f919c64d22ab257695511d"),
    ("demo:100.00:12:password_1:Shp_item=1:Shp_login=Vasya", "96eb8bc61923e2b6fd5eb08165a0d4d6"),
    ("demo:100.00:12:USD:password_1", "4e55fe560b6fbcc225ef150aa8db44c7"),
    ("demo:100.00:12:203.0.113.5:password_1", "c6e19ffda2d62abb5b7819435e1dc161"),
    ("demo:100.00:12:https://example.com/ok:GET:https://example.com/fail:GET:password_1",
     "e19a78c1c2ea3de98c553f32b50614ba"),
    ("demo:100.00:12:true:password_1", "8197f320849176cad13261f82a252588"),
    ("demo::12:password_1", "e36f034c41673ac549ae909eb555568c"),
    ("demo:100.00:13:password_1", "6f30d742d096aa192a3d90ffc150be13"),
    ("100.000000:12:password_2", "a938d4f260b1ba96119b95288ac1ad31"),
    ("100.00:12:password_2", "bf7ddc7366e51fe6a1f319b2ba7e4a42"),
    ("100.000000:12:password_2:Shp_item=1:Shp_login=Vasya", "d1763641e18ea30b3f341e1f12a75769"),
    ("100.000000:12:password_1", "7b724b385eac1339f2ced297a78729bc"),
    ("demo:12:password_2", "700a3ea3d41e9811ded6225ae651150a"),
    ("demo:100.00:12:password_1:Shp_name=Вася", "00aea64a6e30ea66f673a1b6a32d1ddc"),
    ("demo:100.00:12:password_1:Shp_name=%D0%92%D0%B0%D1%81%D1%8F", "ca7466ce473af28e41fdfaefe71471ac"),
    (f"demo:100.00:12:{RECEIPT_ENCODED}:password_1", "832c6f9ed7c871c1bc38367abf0bd58b"),
    (f"demo:100.00:12:{RECEIPT_JSON}:password_1", "0d983003bd3296514f88699b5547c6bf"),
]


@pytest.mark.parametrize(("text", "digest"), MD5_VECTORS)
def test_md5_vectors(text: str, digest: str) -> None:
    assert p.hash_hex("md5", text) == digest


OTHER_ALGORITHMS = {
    "ripemd160": "9d0350b8551b3a8f0ff15e9eab6b14d8d76577cd",
    "sha1": "a0e10d5020019be95b7b26225980713cf0e2e7d8",
    "sha256": "4917b92bba01f7b92dd784205fcd50914944ac8d403a4d36678005a400eaf66e",
    "sha384": "61aedd01816ef65f4553a4f5dda358d59ed802a7f0d5929675d6361971b9025a"
              "2fc3dac5b798d10a8f278b264ac81331",
    "sha512": "b2f9280138e1654098bf7abf22edf1beed73c9efe101e10d648a7a8afbaeed04"
              "d63dbb88b0afa2b96aec344b157b96758ef81034c437411db6d73bdea0145593",
    "md5": "b29319bf6ad7ff85966d61d6df85ffef",
}


def test_hash_algorithms_constant() -> None:
    assert p.HASH_ALGORITHMS == ("md5", "ripemd160", "sha1", "sha256", "sha384", "sha512")
    assert set(OTHER_ALGORITHMS) == set(p.HASH_ALGORITHMS)


@pytest.mark.parametrize("algorithm", p.HASH_ALGORITHMS)
def test_init_signature_all_algorithms(algorithm: str) -> None:
    signature = p.init_signature(algorithm, merchant_login=LOGIN, out_sum="100.00", inv_id=12, password1=P1)
    assert signature == OTHER_ALGORITHMS[algorithm]
    # the shop setting may be spelt in capitals (MD5, SHA256…)
    assert p.init_signature(algorithm.upper(), merchant_login=LOGIN, out_sum="100.00", inv_id=12,
                            password1=P1) == signature


def test_sha256_result_vector() -> None:
    assert p.result_signature("sha256", "100.000000", "12", P2) == (
        "b1cf5031a3e38ef22eedaae994f03f795317760cfdd90e4ef5c5aa40a75fe6fa"
    )


def test_hash_hex_rejects_unknown_algorithm() -> None:
    for bad in ("sha224", "md4", "", "HS256", None):
        with pytest.raises(p.UnsupportedAlgorithm):
            p.hash_hex(bad, "x")  # type: ignore[arg-type]
    assert issubclass(p.UnsupportedAlgorithm, ValueError)


def test_hash_hex_is_lowercase_utf8() -> None:
    assert p.hash_hex("md5", "Вася") == hashlib.md5("Вася".encode()).hexdigest()
    assert p.hash_hex("sha1", "x") == p.hash_hex("sha1", "x").lower()


# ------------------------------------------------------------------------------------------------
# RIPEMD-160 (pycryptodome: OpenSSL 3 builds often lack it)
# ------------------------------------------------------------------------------------------------

RIPEMD160_VECTORS = [
    (b"", "9c1185a5c5e9fc54612808977ee8f548b2258d31"),
    (b"a", "0bdc9d2d256b3ee9daae347be6f4dc835a467ffe"),
    (b"abc", "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc"),
    (b"message digest", "5d0689ef49d2fae572b881b123a85ffa21595f36"),
    (b"abcdefghijklmnopqrstuvwxyz", "f71c27109c692c1b56bbdceb5b9d2865b3708dbc"),
    (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "12a053384a9c0c88e405a06c27dcf49ada62eb2b"),
    (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
     "b0e20b6e3116640286ed3a87a5713079b21f5189"),
    (b"1234567890" * 8, "9b752e45573d4b39f4dbd3323cab82bf63326bfb"),
]


@pytest.mark.parametrize(("data", "digest"), RIPEMD160_VECTORS)
def test_ripemd160_standard_vectors(data: bytes, digest: str) -> None:
    assert p.hash_hex("ripemd160", data.decode("ascii")) == digest
    assert p.hash_hex("RIPEMD160", data.decode("ascii")) == digest


def test_ripemd160_padding_boundaries() -> None:
    # lengths around the 55/56/64-byte padding edges, cross-checked with OpenSSL when it has RIPEMD-160
    try:
        hashlib.new("ripemd160")
        openssl = True
    except ValueError:
        openssl = False
    for length in (54, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000):
        text = ("abcdefghij" * 100)[:length]
        digest = p.hash_hex("ripemd160", text)
        assert len(digest) == 40 and digest == digest.lower()
        if openssl:
            assert digest == hashlib.new("ripemd160", text.encode()).hexdigest()


def test_hash_hex_ripemd160_signature_vector() -> None:
    assert p.hash_hex("RIPEMD160", "demo:100.00:12:password_1") == OTHER_ALGORITHMS["ripemd160"]


def test_hash_hex_ripemd160_standard_vectors() -> None:
    assert p.hash_hex("ripemd160", "") == "9c1185a5c5e9fc54612808977ee8f548b2258d31"
    assert p.hash_hex("ripemd160", "abc") == "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc"


# ------------------------------------------------------------------------------------------------
# §2.2 init signature through the API
# ------------------------------------------------------------------------------------------------


def _init(**kwargs: object) -> str:
    base: dict[str, object] = {"merchant_login": LOGIN, "out_sum": "100.00", "inv_id": 12, "password1": P1}
    base.update(kwargs)
    return p.init_signature("md5", **base)  # type: ignore[arg-type]


def test_init_basic() -> None:
    assert _init() == "b29319bf6ad7ff85966d61d6df85ffef"
    assert _init(inv_id="12") == "b29319bf6ad7ff85966d61d6df85ffef"


def test_init_without_inv_id_keeps_empty_slot() -> None:
    assert _init(inv_id=None) == "f269c85a0fce9f4c3d68c30398dfdcd1"


def test_init_out_sum_is_hashed_literally() -> None:
    assert _init(out_sum="100") == "38e3ab3506f919c64d22ab257695511d"
    assert _init(out_sum="100") != _init(out_sum="100.00")
    with pytest.raises(TypeError):
        _init(out_sum=Decimal("100.00"))
    with pytest.raises(TypeError):
        _init(out_sum=100.0)


def test_init_shp_sorted_whatever_the_input_order() -> None:
    expected = "96eb8bc61923e2b6fd5eb08165a0d4d6"
    assert _init(shp={"Shp_login": "Vasya", "Shp_item": "1"}) == expected
    assert _init(shp={"Shp_item": "1", "Shp_login": "Vasya"}) == expected


def test_init_shp_mixed_prefixes_sorted_case_insensitively() -> None:
    # the official WordPress plugin's order: label < merchant_id < order_id (ignoring prefix case)
    shp = {"Shp_order_id": "3", "shp_label": "x", "Shp_merchant_id": "2"}
    expected = p.hash_hex("md5", "demo:100.00:12:password_1:shp_label=x:Shp_merchant_id=2:Shp_order_id=3")
    assert _init(shp=shp) == expected


def test_init_shp_rejects_non_custom_names() -> None:
    for name in ("IncCurrLabel", "Shp", "Shp_", "item"):
        with pytest.raises(ValueError):
            _init(shp={name: "1"})


def test_init_shp_values_must_be_strings() -> None:
    with pytest.raises(TypeError):
        _init(shp={"Shp_item": 1})


def test_init_shp_cyrillic_raw_and_encoded() -> None:
    assert _init(shp={"Shp_name": "Вася"}) == "00aea64a6e30ea66f673a1b6a32d1ddc"
    assert _init(shp={"Shp_name": "%D0%92%D0%B0%D1%81%D1%8F"}) == "ca7466ce473af28e41fdfaefe71471ac"


def test_init_out_sum_currency_and_user_ip() -> None:
    assert _init(out_sum_currency="USD") == "4e55fe560b6fbcc225ef150aa8db44c7"
    assert _init(user_ip="203.0.113.5") == "c6e19ffda2d62abb5b7819435e1dc161"


def test_init_success_and_fail_url2_raw() -> None:
    assert _init(
        success_url2="https://example.com/ok", success_url2_method="GET",
        fail_url2="https://example.com/fail", fail_url2_method="GET",
    ) == "e19a78c1c2ea3de98c553f32b50614ba"


@pytest.mark.parametrize("kwargs", [
    {"success_url2": "https://example.com/ok"},
    {"success_url2_method": "GET"},
    {"fail_url2": "https://example.com/fail"},
    {"fail_url2": "https://example.com/fail", "fail_url2_method": "get"},
    {"success_url2": "https://example.com/ok", "success_url2_method": "PUT"},
])
def test_init_url2_pairs_validated(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        _init(**kwargs)


def test_init_hold_step_by_step() -> None:
    assert _init(step_by_step=True) == "8197f320849176cad13261f82a252588"


def test_init_receipt_vector() -> None:
    assert _init(receipt=RECEIPT_ENCODED) == "832c6f9ed7c871c1bc38367abf0bd58b"
    # the raw-JSON variant some libraries sign gives a different hash
    assert _init(receipt=RECEIPT_JSON) == "0d983003bd3296514f88699b5547c6bf"


def test_init_empty_optional_fields_are_not_sent() -> None:
    assert _init(out_sum_currency="", user_ip=None, receipt="", result_url2="", token="") == _init()


def test_init_full_order_of_pieces() -> None:
    text = ("demo:100.00:12:USD:203.0.113.5:RCPT:true:https://r2:https://ok:POST:https://fail:GET:TOKEN"
            ":password_1:Shp_a=1:Shp_b=2")
    assert _init(
        shp={"Shp_b": "2", "Shp_a": "1"}, token="TOKEN", fail_url2="https://fail", fail_url2_method="GET",
        success_url2="https://ok", success_url2_method="POST", result_url2="https://r2", step_by_step=True,
        receipt="RCPT", user_ip="203.0.113.5", out_sum_currency="USD",
    ) == p.hash_hex("md5", text)


def test_init_cof_formula() -> None:
    # §2.5 CoF: MerchantLogin:OutSum:InvId:Receipt:ResultUrl2:Token:Password#1
    assert _init(receipt="R", result_url2="https://r2", token="OPKEY") == p.hash_hex(
        "md5", "demo:100.00:12:R:https://r2:OPKEY:password_1")


def test_hold_and_recurring_formulas() -> None:
    assert p.hold_cancel_signature("md5", merchant_login=LOGIN, inv_id=12, password1=P1) == (
        "e36f034c41673ac549ae909eb555568c")
    assert p.recurring_signature("md5", merchant_login=LOGIN, out_sum="100.00", inv_id=13, password1=P1) == (
        "6f30d742d096aa192a3d90ffc150be13")
    assert p.recurring_signature("md5", merchant_login=LOGIN, out_sum="100.00", inv_id="13", password1=P1,
                                 receipt=RECEIPT_ENCODED) == p.hash_hex(
        "md5", f"demo:100.00:13:{RECEIPT_ENCODED}:password_1")
    assert p.hold_confirm_signature("md5", merchant_login=LOGIN, out_sum="100.00", inv_id=12, password1=P1) == (
        "b29319bf6ad7ff85966d61d6df85ffef")
    for bad in (0, "0", "", None):
        with pytest.raises(ValueError):
            p.recurring_signature("md5", merchant_login=LOGIN, out_sum="1.00", inv_id=bad,  # type: ignore
                                  password1=P1)


# ------------------------------------------------------------------------------------------------
# §2.3-2.5 callbacks and OpStateExt
# ------------------------------------------------------------------------------------------------


def test_result_signature_vectors() -> None:
    assert p.result_signature("md5", "100.000000", "12", P2) == "a938d4f260b1ba96119b95288ac1ad31"
    assert p.result_signature("md5", "100.00", "12", P2) == "bf7ddc7366e51fe6a1f319b2ba7e4a42"
    assert p.result_signature("md5", "100.000000", "12", P2, {"Shp_login": "Vasya", "Shp_item": "1"}) == (
        "d1763641e18ea30b3f341e1f12a75769")


def test_success_and_opstate_vectors() -> None:
    assert p.success_signature("md5", "100.000000", "12", P1) == "7b724b385eac1339f2ced297a78729bc"
    assert p.opstate_signature("md5", LOGIN, "12", P2) == "700a3ea3d41e9811ded6225ae651150a"
    assert p.opstate_signature("md5", LOGIN, 12, P2) == "700a3ea3d41e9811ded6225ae651150a"


def test_verify_result_params_accepts_uppercase_and_ignores_unknown_fields() -> None:
    params = {
        "OutSum": "100.000000", "InvId": "12", "SignatureValue": "D1763641E18EA30B3F341E1F12A75769",
        "Shp_login": "Vasya", "Shp_item": "1", "Fee": "3.9", "EMail": "a@b.c", "IsTest": "1",
        "PaymentMethod": "BankCard", "IncCurrLabel": "BankCardPSR", "out_summ": "100.000000",
    }
    assert p.verify_result_params(params, algorithm="md5", password2=P2)
    assert not p.verify_result_params(params, algorithm="md5", password2=P1)
    assert not p.verify_result_params({**params, "OutSum": "100.00"}, algorithm="md5", password2=P2)
    assert not p.verify_result_params({**params, "Shp_extra": "1"}, algorithm="md5", password2=P2)
    without_shp = {k: v for k, v in params.items() if not k.startswith("Shp_")}
    assert not p.verify_result_params(without_shp, algorithm="md5", password2=P2)
    for missing in ("OutSum", "InvId", "SignatureValue"):
        broken = {k: v for k, v in params.items() if k != missing}
        assert not p.verify_result_params(broken, algorithm="md5", password2=P2)
    with pytest.raises(p.UnsupportedAlgorithm):  # a configuration error must not pass for a forgery
        p.verify_result_params(params, algorithm="nope", password2=P2)


def test_verify_success_params() -> None:
    params = {"OutSum": "100.000000", "InvId": "12", "SignatureValue": "7b724b385eac1339f2ced297a78729bc",
              "Culture": "ru", "IsTest": "1"}
    assert p.verify_success_params(params, algorithm="md5", password1=P1)
    assert not p.verify_success_params(params, algorithm="md5", password1=P2)


def test_result_answer() -> None:
    assert p.result_answer("12") == "OK12"
    assert p.result_answer(5) == "OK5"


# ------------------------------------------------------------------------------------------------
# signatures_match and extract_shp
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expected", "received", "result"), [
    ("b29319bf6ad7ff85966d61d6df85ffef", "b29319bf6ad7ff85966d61d6df85ffef", True),
    ("b29319bf6ad7ff85966d61d6df85ffef", "B29319BF6AD7FF85966D61D6DF85FFEF", True),
    ("B29319BF6AD7FF85966D61D6DF85FFEF", "b29319bf6ad7FF85966d61d6df85ffef", True),
    ("b29319bf6ad7ff85966d61d6df85ffef", "b29319bf6ad7ff85966d61d6df85ffee", False),
    ("b29319bf6ad7ff85966d61d6df85ffef", "b29319bf6ad7ff85966d61d6df85ffe", False),
    ("b29319bf6ad7ff85966d61d6df85ffef", "", False),
    ("", "", False),
    ("b29319bf6ad7ff85966d61d6df85ffef", "б29319bf6ad7ff85966d61d6df85ffef", False),
    ("b29319bf6ad7ff85966d61d6df85ffef", "\x00\xff garbage ✓", False),
    ("b29319bf6ad7ff85966d61d6df85ffef", None, False),
    ("b29319bf6ad7ff85966d61d6df85ffef", b"b29319bf6ad7ff85966d61d6df85ffef", False),
    ("b29319bf6ad7ff85966d61d6df85ffef", 12, False),
    ("b29319bf6ad7ff85966d61d6df85ffef", ["b29319bf6ad7ff85966d61d6df85ffef"], False),
    (None, "b29319bf6ad7ff85966d61d6df85ffef", False),
])
def test_signatures_match(expected: object, received: object, result: bool) -> None:
    assert p.signatures_match(expected, received) is result  # type: ignore[arg-type]


def test_extract_shp() -> None:
    params = {"OutSum": "1", "Shp_a": "1", "shp_b": "2", "SHP_c": "3", "Shp_": "x", "shpLegacy": "y",
              "InvId": "5", "Shop_x": "z"}
    assert p.extract_shp(params) == {"Shp_a": "1", "shp_b": "2", "SHP_c": "3"}
    assert p.extract_shp({}) == {}


# ------------------------------------------------------------------------------------------------
# Amounts
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "text"), [
    (Decimal("100"), "100.00"),
    (Decimal("100.5"), "100.50"),
    (Decimal("0.01"), "0.01"),
    (Decimal("100.000000"), "100.00"),
    (Decimal("1E+3"), "1000.00"),
    (250, "250.00"),
    (Decimal("0"), "0.00"),
])
def test_format_out_sum(amount: Decimal, text: str) -> None:
    assert p.format_out_sum(amount) == text


@pytest.mark.parametrize("amount", [Decimal("1.005"), Decimal("-1"), Decimal("NaN"), Decimal("Infinity")])
def test_format_out_sum_rejects(amount: Decimal) -> None:
    with pytest.raises(ValueError):
        p.format_out_sum(amount)


@pytest.mark.parametrize("amount", [1.0, "100.00", True, None])
def test_format_out_sum_rejects_non_decimal(amount: object) -> None:
    with pytest.raises(TypeError):
        p.format_out_sum(amount)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "value"), [
    ("100", Decimal("100")),
    ("100.00", Decimal("100.00")),
    ("100.000000", Decimal("100")),
    ("0", Decimal("0")),
    ("0.01", Decimal("0.01")),
    ("007.5", Decimal("7.5")),
    ("12345678901234567.89", Decimal("12345678901234567.89")),  # exactly 20 characters
])
def test_parse_amount_accepts(text: str, value: Decimal) -> None:
    parsed = p.parse_amount(text)
    assert parsed == value
    assert isinstance(parsed, Decimal)


@pytest.mark.parametrize("text", [
    "", " ", "100,00", "1,000.00", "1e3", "1E3", "1.5e2", "NaN", "nan", "Infinity", "inf", "-inf",
    "+100", "-100", "-0", " 100", "100 ", "100\n", "100.", ".5", "1.2.3", "0x10", "١٠٠",  # Arabic digits
    "100.00₽", "123456789012345678901", "1_000", "sNaN",
])
def test_parse_amount_rejects(text: str) -> None:
    with pytest.raises(p.MalformedField):
        p.parse_amount(text)


@pytest.mark.parametrize("value", [None, 100, Decimal("1"), 1.0, b"100"])
def test_parse_amount_rejects_non_strings(value: object) -> None:
    with pytest.raises(p.MalformedField):
        p.parse_amount(value)


def test_parse_amount_message_names_field() -> None:
    with pytest.raises(p.MalformedField, match="OutSum"):
        p.parse_amount("1,00", "OutSum")
    assert issubclass(p.MalformedField, p.ProtocolError)
    assert issubclass(p.ProtocolError, ValueError)


# ------------------------------------------------------------------------------------------------
# §9 receipts
# ------------------------------------------------------------------------------------------------


def _hosting_item(**kwargs: object) -> p.ReceiptItem:
    base: dict[str, object] = {"name": "Hosting", "quantity": 1, "sum": Decimal("100.00"), "tax": "none",
                               "payment_method": "full_payment", "payment_object": "service"}
    base.update(kwargs)
    return p.ReceiptItem(**base)  # type: ignore[arg-type]


def test_build_receipt_vector() -> None:
    text = p.build_receipt(sno="usn_income", items=[_hosting_item()])
    assert text == RECEIPT_JSON
    assert p.encode_receipt(text) == RECEIPT_ENCODED
    assert _init(receipt=p.encode_receipt(text)) == "832c6f9ed7c871c1bc38367abf0bd58b"


def test_build_receipt_accepts_mappings() -> None:
    item = {"name": "Hosting", "quantity": 1, "sum": Decimal("100"), "tax": "none",
            "payment_method": "full_payment", "payment_object": "service"}
    assert p.build_receipt(sno="usn_income", items=[item]) == RECEIPT_JSON
    with pytest.raises(ValueError):
        p.build_receipt(items=[{"name": "x", "sum": Decimal("1"), "tax": "none", "colour": "red"}])
    with pytest.raises(ValueError):
        p.build_receipt(items=[{"name": "x", "tax": "none"}])


def test_cyrillic_receipt_vectors() -> None:
    text = p.build_receipt(items=[p.ReceiptItem(name="Хостинг VPS", sum=Decimal("250.50"), tax="none")])
    assert text == CYRILLIC_RECEIPT_JSON
    encoded = p.encode_receipt(text)
    assert "%20" in encoded and "+" not in encoded
    signature = _init(out_sum="250.50", receipt=encoded)
    assert signature.startswith("5b2c2ef1")
    assert signature == "5b2c2ef1b6093e8dfe6da2c32a3df7d0"
    # PHP urlencode()/quote_plus() would have given '+' for the space, hence another hash (§2.6)
    assert _init(out_sum="250.50", receipt=quote_plus(text)) == "844523e8ab97a53317719c358b063ef6"


def test_receipt_json_is_valid_and_numbers_are_numbers() -> None:
    text = p.build_receipt(items=[_hosting_item(name='He said "hi"', quantity=Decimal("1.500"),
                                                sum=Decimal("150.10"))])
    data = json.loads(text, parse_float=Decimal)
    item = data["items"][0]
    assert item["name"] == 'He said "hi"'
    assert item["quantity"] == Decimal("1.5")
    assert item["sum"] == Decimal("150.1")
    assert text == ('{"items":[{"name":"He said \\"hi\\"","quantity":1.5,"sum":150.1,'
                    '"payment_method":"full_payment","payment_object":"service","tax":"none"}]}')
    assert "sno" not in data


def test_receipt_name_truncated_to_128() -> None:
    text = p.build_receipt(items=[_hosting_item(name="Я" * 200)])
    assert json.loads(text)["items"][0]["name"] == "Я" * 128


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tax": "vat18"}, "tax"),
    ({"tax": None}, "tax"),
    ({"payment_method": "cash"}, "payment_method"),
    ({"payment_object": "goods"}, "payment_object"),
    ({"sum": Decimal("1.005")}, "two decimal"),
    ({"sum": Decimal("-1")}, "negative"),
    ({"sum": Decimal("100000000")}, "8 integer"),
    ({"sum": Decimal("NaN")}, "finite"),
    ({"quantity": 0}, "positive"),
    ({"name": "   "}, "name"),
    ({"name": ""}, "name"),
])
def test_receipt_validation_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        p.build_receipt(items=[_hosting_item(**kwargs)])


def test_receipt_validation_lists_choices() -> None:
    with pytest.raises(ValueError, match="vat20"):
        p.build_receipt(items=[_hosting_item(tax="vat18")])
    with pytest.raises(ValueError, match="sno"):
        p.build_receipt(sno="simplified", items=[_hosting_item()])
    with pytest.raises(ValueError, match="at least one item"):
        p.build_receipt(items=[])


def test_receipt_refuses_floats() -> None:
    with pytest.raises(TypeError):
        p.build_receipt(items=[_hosting_item(sum=100.0)])
    with pytest.raises(TypeError):
        p.build_receipt(items=[_hosting_item(quantity=1.0)])


def test_receipt_choice_lists() -> None:
    assert p.SNO_CHOICES == ("osn", "usn_income", "usn_income_outcome", "esn", "patent")
    assert p.TAX_CHOICES == ("none", "vat0", "vat10", "vat110", "vat22", "vat122", "vat20", "vat120", "vat5",
                             "vat7", "vat105", "vat107")
    assert "full_payment" in p.PAYMENT_METHOD_CHOICES and len(p.PAYMENT_METHOD_CHOICES) == 7
    assert "non-operating_gain" in p.PAYMENT_OBJECT_CHOICES and len(p.PAYMENT_OBJECT_CHOICES) == 18
    for choices in (p.SNO_CHOICES, p.TAX_CHOICES, p.PAYMENT_METHOD_CHOICES, p.PAYMENT_OBJECT_CHOICES):
        assert isinstance(choices, tuple) and len(set(choices)) == len(choices)


def test_receipt_total() -> None:
    items = [_hosting_item(sum=Decimal("100.00")), _hosting_item(sum=Decimal("0.50"))]
    assert p.receipt_total(items) == Decimal("100.50")


def test_receipt_get_link_is_double_encoded() -> None:
    query = urlencode({"Receipt": p.encode_receipt(RECEIPT_JSON)})
    assert query.startswith("Receipt=%257B%2522sno%2522%253A")
    # what Robokassa decodes from the link is exactly the text we signed
    assert parse_qs(query)["Receipt"] == [RECEIPT_ENCODED]


# ------------------------------------------------------------------------------------------------
# §6.1 OpStateExt XML
# ------------------------------------------------------------------------------------------------

OPSTATE_AUTH_NS = """<?xml version="1.0" encoding="utf-8"?>
<OperationStateResponse xmlns:xsd="http://www.w3.org/2001/XMLSchema"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns="http://auth.robokassa.ru/Merchant/WebService/">
  <Result>
    <Code>0</Code>
  </Result>
  <State>
    <Code>100</Code>
    <RequestDate>2025-07-14T12:01:02.1234567+03:00</RequestDate>
    <StateDate>2025-07-14T12:00:59.9876543+03:00</StateDate>
  </State>
  <Info>
    <IncCurrLabel>BankCardPSR</IncCurrLabel>
    <IncSum>103.500000</IncSum>
    <IncAccount>220220******1234</IncAccount>
    <PaymentMethod>
      <Code>BankCard</Code>
      <Description>Банковская карта</Description>
    </PaymentMethod>
    <OutCurrLabel>BankCardPSR</OutCurrLabel>
    <OutSum>100.000000</OutSum>
    <OpKey>0005F891-8CCD-434B-8455-816AFFFDBF37-0VOisWikFF</OpKey>
    <BankCardRRN>123456789012</BankCardRRN>
  </Info>
  <UserField>
    <Field><Name>Shp_item</Name><Value>1</Value></Field>
    <Field><Name>Shp_login</Name><Value>Вася</Value></Field>
  </UserField>
</OperationStateResponse>
"""


def _expected_paid_state() -> p.OpState:
    return p.OpState(
        result_code=0, description="", state_code=100,
        state_date="2025-07-14T12:00:59.9876543+03:00", request_date="2025-07-14T12:01:02.1234567+03:00",
        op_key=REFUND_OPKEY, out_sum=Decimal("100"), inc_sum=Decimal("103.5"), inc_curr_label="BankCardPSR",
        payment_method="BankCard", user_fields={"Shp_item": "1", "Shp_login": "Вася"},
    )


@pytest.mark.parametrize("namespace_attr", [
    'xmlns="http://auth.robokassa.ru/Merchant/WebService/"',
    'xmlns="http://merchant.roboxchange.com/WebService/"',
    "",
])
def test_parse_opstate_any_namespace(namespace_attr: str) -> None:
    xml_text = OPSTATE_AUTH_NS.replace('xmlns="http://auth.robokassa.ru/Merchant/WebService/"', namespace_attr)
    state = p.parse_opstate(xml_text)
    assert state == _expected_paid_state()
    assert state.is_paid
    assert isinstance(state.out_sum, Decimal) and str(state.out_sum) == "100.000000"


def test_parse_opstate_prefixed_namespace_and_bytes() -> None:
    xml_text = (
        '<rk:OperationStateResponse xmlns:rk="http://auth.robokassa.ru/Merchant/WebService/">'
        "<rk:Result><rk:Code>0</rk:Code></rk:Result><rk:State><rk:Code>5</rk:Code></rk:State>"
        "<rk:Info><rk:OutSum>10.00</rk:OutSum></rk:Info></rk:OperationStateResponse>"
    )
    state = p.parse_opstate(xml_text.encode("utf-8"))
    assert state.state_code == p.STATE_INITIATED and state.out_sum == Decimal("10")
    assert not state.is_paid
    assert state.op_key is None and state.user_fields == {}


def test_parse_opstate_minimal_answers_from_libraries() -> None:
    state = p.parse_opstate(
        "<OperationStateResponse><Result><Code>0</Code></Result><State><Code>100</Code></State>"
        "</OperationStateResponse>")
    assert state.is_paid and state.out_sum is None and state.payment_method is None


def test_parse_opstate_bare_payment_method_text() -> None:
    state = p.parse_opstate(
        "<OperationStateResponse><Result><Code>0</Code></Result><Info><PaymentMethod>SBP</PaymentMethod>"
        "</Info></OperationStateResponse>")
    assert state.payment_method == "SBP" and state.state_code is None


@pytest.mark.parametrize(("code", "description"), [
    (1, "Неверная подпись"), (3, "Операция не найдена"), (4, ""), (1000, "Internal error")])
def test_parse_opstate_error_results(code: int, description: str) -> None:
    desc = f"<Description>{description}</Description>" if description else ""
    xml_text = (f'<OperationStateResponse xmlns="{p.LEGACY_XML_NAMESPACE}"><Result><Code>{code}</Code>'
                f"{desc}</Result></OperationStateResponse>")
    assert p.parse_opstate(xml_text) == p.OpState(result_code=code, description=description)


@pytest.mark.parametrize("xml_text", [
    "",
    "not xml",
    "<OperationStateResponse><Result>",
    "<html><body>502 Bad Gateway</body></html>",
    "<OperationStateResponse><State><Code>100</Code></State></OperationStateResponse>",  # no Result
    "<OperationStateResponse><Result><Code>zero</Code></Result></OperationStateResponse>",
    "<!--" + "x" * 10000 + '--><!DOCTYPE r [<!ENTITY a "b">]><OperationStateResponse/>',
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><OperationStateResponse><Result><Code>&a;'
    "</Code></Result></OperationStateResponse>",
])
def test_parse_opstate_rejects_garbage(xml_text: str) -> None:
    with pytest.raises(p.ProtocolError):
        p.parse_opstate(xml_text)


def test_parse_opstate_rejects_bad_amount() -> None:
    xml_text = ("<OperationStateResponse><Result><Code>0</Code></Result><Info><OutSum>1,00</OutSum></Info>"
                "</OperationStateResponse>")
    with pytest.raises(p.MalformedField, match="OutSum"):
        p.parse_opstate(xml_text)


@pytest.mark.parametrize("state", [
    _expected_paid_state(),
    p.OpState(result_code=0, state_code=10, state_date="2025-01-01T00:00:00+03:00"),
    p.OpState(result_code=0, state_code=20, op_key="k", out_sum=Decimal("1.5"), user_fields={"shp_x": ""}),
    p.OpState(result_code=3, description="No operation"),
    p.OpState(result_code=1),
])
def test_opstate_round_trip(state: p.OpState) -> None:
    xml_text = p.build_opstate_xml(state)
    assert xml_text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    assert p.AUTH_XML_NAMESPACE in xml_text
    assert p.parse_opstate(xml_text) == state
    assert p.parse_opstate(p.build_opstate_xml(state, namespace=p.LEGACY_XML_NAMESPACE)) == state
    assert p.parse_opstate(p.build_opstate_xml(state, namespace=None)) == state


def test_build_opstate_writes_six_decimals_and_only_result_on_error() -> None:
    xml_text = p.build_opstate_xml(_expected_paid_state())
    assert "<OutSum>100.000000</OutSum>" in xml_text and "<IncSum>103.500000</IncSum>" in xml_text
    error_xml = p.build_opstate_xml(p.OpState(result_code=3, description="x", state_code=100, op_key="k"))
    assert "<State>" not in error_xml and "<Info>" not in error_xml


# ------------------------------------------------------------------------------------------------
# §6.2 GetCurrencies XML
# ------------------------------------------------------------------------------------------------

CURRENCIES_CAPTURED = """<CurrenciesList xmlns:xsd="http://www.w3.org/2001/XMLSchema"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://merchant.roboxchange.com/WebService/">
<Result>
<Code>0</Code>
</Result>
<Groups>
<Group Code="EMoney" Description="Электронным кошельком">
<Items>
<Currency Label="Qiwi40PS" Alias="QiwiWallet" Name="QIWI Кошелек"/>
<Currency Label="WMR20PM" Alias="WMR" Name="WMR"/>
</Items>
</Group>
<Group Code="BankCard" Description="Банковской картой">
<Items>
<Currency Label="BankCardPSR" Alias="BankCard" Name="Банковская карта"/>
<Currency Label="YandexPayPSR" Alias="YandexPay" Name="Яндекс Pay" MaxValue="40000"/>
</Items>
</Group>
<Group Code="Mobile" Description="Сотовые операторы">
<Items>
<Currency Label="RuRuBeelinePSR" Alias="PhoneBeeline" Name="Билайн" MinValue="10" MaxValue="14354"/>
</Items>
</Group>
</Groups>
</CurrenciesList>
"""


def test_parse_currencies_captured_answer() -> None:
    groups = p.parse_currencies(CURRENCIES_CAPTURED)
    assert [g.code for g in groups] == ["EMoney", "BankCard", "Mobile"]
    assert groups[1] == p.CurrencyGroup("BankCard", "Банковской картой", (
        p.Currency("BankCardPSR", "BankCard", "Банковская карта"),
        p.Currency("YandexPayPSR", "YandexPay", "Яндекс Pay", None, Decimal("40000")),
    ))
    beeline = groups[2].items[0]
    assert beeline.min_value == Decimal("10") and beeline.max_value == Decimal("14354")


def test_parse_currencies_auth_namespace() -> None:
    xml_text = CURRENCIES_CAPTURED.replace(p.LEGACY_XML_NAMESPACE, p.AUTH_XML_NAMESPACE)
    assert p.parse_currencies(xml_text) == p.parse_currencies(CURRENCIES_CAPTURED)


def test_parse_currencies_error_result() -> None:
    xml_text = ("<CurrenciesList><Result><Code>2</Code><Description>Shop not found</Description></Result>"
                "</CurrenciesList>")
    with pytest.raises(p.GatewayError) as info:
        p.parse_currencies(xml_text)
    assert info.value.code == 2 and info.value.description == "Shop not found"


@pytest.mark.parametrize("xml_text", [
    "<OperationStateResponse><Result><Code>0</Code></Result></OperationStateResponse>",
    '<CurrenciesList><Result><Code>0</Code></Result><Groups><Group Code="G"><Items>'
    '<Currency Label="L" MaxValue="1e5"/></Items></Group></Groups></CurrenciesList>',
    "<CurrenciesList>",
])
def test_parse_currencies_rejects_garbage(xml_text: str) -> None:
    with pytest.raises(p.ProtocolError):
        p.parse_currencies(xml_text)


def test_currencies_round_trip() -> None:
    groups = p.parse_currencies(CURRENCIES_CAPTURED)
    assert p.parse_currencies(p.build_currencies_xml(groups)) == groups
    assert tuple(p.parse_currencies(p.build_currencies_xml(p.BUILTIN_CURRENCIES))) == p.BUILTIN_CURRENCIES
    assert p.parse_currencies(p.build_currencies_xml([])) == []


def test_builtin_currencies() -> None:
    groups = {g.description: g for g in p.BUILTIN_CURRENCIES}
    assert list(groups) == ["Bank cards", "Cash", "E-wallets", "Mobile payments", "Online banking"]
    labels = [c.label for g in p.BUILTIN_CURRENCIES for c in g.items]
    assert 12 <= len(labels) <= 20
    assert len(set(labels)) == len(labels)
    assert {"BankCardPSR", "SBPPSR", "YandexPayPSR"} <= set(labels)
    for group in p.BUILTIN_CURRENCIES:
        assert group.code and group.items
        for currency in group.items:
            assert currency.label and currency.alias and currency.name
            assert currency.name.isascii()  # English descriptions
            for limit in (currency.min_value, currency.max_value):
                assert limit is None or isinstance(limit, Decimal)


# ------------------------------------------------------------------------------------------------
# §8 Refund API
# ------------------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _hand_made_jwt(header: dict[str, str], payload: bytes, key: bytes, digest: str | None) -> str:
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(payload)}"
    signature = "" if digest is None else _b64url(hmac.new(key, signing_input.encode(), digest).digest())
    return f"{signing_input}.{signature}"


def test_refund_jwt_vector() -> None:
    assert p.make_refund_jwt(P3, op_key=REFUND_OPKEY, refund_sum=Decimal("1.0")) == REFUND_JWT
    payload = p.verify_refund_jwt(REFUND_JWT, P3)
    assert payload == {"OpKey": REFUND_OPKEY, "RefundSum": Decimal("1.0")}
    assert isinstance(payload["RefundSum"], Decimal)


def test_refund_jwt_payload_is_compact_json() -> None:
    token = p.make_refund_jwt(P3, op_key="K", refund_sum=Decimal("12.50"), invoice_items=[
        p.RefundItem(name="Хостинг", cost=Decimal("12.50"), tax="vat20", payment_method="full_payment",
                     payment_object="service"),
    ])
    payload_b64 = token.split(".")[1]
    raw = base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4)).decode("utf-8")
    assert raw == ('{"OpKey":"K","RefundSum":12.50,"InvoiceItems":[{"Name":"Хостинг","Quantity":1,'
                   '"Cost":12.50,"Tax":"vat20","PaymentMethod":"full_payment","PaymentObject":"service"}]}')
    assert p.verify_refund_jwt(token, P3)["InvoiceItems"][0]["Cost"] == Decimal("12.50")


def test_refund_jwt_full_refund_has_only_opkey() -> None:
    token = p.make_refund_jwt(P3, op_key="K")
    assert p.verify_refund_jwt(token, P3) == {"OpKey": "K"}


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_refund_jwt_algorithms_round_trip(algorithm: str) -> None:
    token = p.make_refund_jwt(P3, op_key="K", refund_sum=Decimal("3"), algorithm=algorithm)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": algorithm, "typ": "JWT"}
    assert p.verify_refund_jwt(token, P3) == {"OpKey": "K", "RefundSum": 3}
    assert p.verify_refund_jwt(token.encode() + b"\n", P3) == {"OpKey": "K", "RefundSum": 3}


def test_refund_jwt_bad_key() -> None:
    with pytest.raises(p.InvalidToken):
        p.verify_refund_jwt(REFUND_JWT, "password_4")


def test_refund_jwt_tampered_payload() -> None:
    header, _payload, signature = REFUND_JWT.split(".")
    forged = _b64url(json.dumps({"OpKey": REFUND_OPKEY, "RefundSum": 1000}).encode())
    with pytest.raises(p.InvalidToken):
        p.verify_refund_jwt(f"{header}.{forged}.{signature}", P3)


@pytest.mark.parametrize(("alg", "digest"), [("none", None), ("HS1", "sha1"), ("MD5", "md5"),
                                             ("RS256", "sha256")])
def test_refund_jwt_rejects_other_algorithms(alg: str, digest: str | None) -> None:
    token = _hand_made_jwt({"alg": alg, "typ": "JWT"}, b'{"OpKey":"K"}', P3.encode(), digest)
    with pytest.raises(p.InvalidToken):
        p.verify_refund_jwt(token, P3)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "a.b", None, 12])
def test_refund_jwt_rejects_garbage(token: object) -> None:
    with pytest.raises(p.InvalidToken):
        p.verify_refund_jwt(token, P3)  # type: ignore[arg-type]


def test_refund_jwt_payload_must_be_object() -> None:
    token = _hand_made_jwt({"alg": "HS256", "typ": "JWT"}, b'["OpKey"]', P3.encode(), "sha256")
    with pytest.raises(p.MalformedMessage):
        p.verify_refund_jwt(token, P3)


def test_make_refund_jwt_validation() -> None:
    with pytest.raises(p.UnsupportedAlgorithm):
        p.make_refund_jwt(P3, op_key="K", algorithm="MD5")
    with pytest.raises(p.UnsupportedAlgorithm):
        p.make_refund_jwt(P3, op_key="K", algorithm="none")
    with pytest.raises(ValueError):
        p.make_refund_jwt(P3, op_key="")
    for bad in (Decimal("0"), Decimal("-1"), Decimal("1.001"), Decimal("NaN")):
        with pytest.raises(ValueError):
            p.make_refund_jwt(P3, op_key="K", refund_sum=bad)
    with pytest.raises(TypeError):
        p.make_refund_jwt(P3, op_key="K", refund_sum=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tax"):
        p.make_refund_jwt(P3, op_key="K", invoice_items=[p.RefundItem(name="x", cost=Decimal("1"), tax="vat18")])


@pytest.mark.parametrize(("text", "expected"), [
    ('{"success":true,"message":null,"requestId":"0e3a62a8-1b35-4b5b-9b5f-1c3c2d1e0f00"}',
     p.RefundCreateAnswer(True, None, "0e3a62a8-1b35-4b5b-9b5f-1c3c2d1e0f00")),
    ('{"success":false,"message":"NotEnoughOperationFunds","requestId":null}',
     p.RefundCreateAnswer(False, "NotEnoughOperationFunds", None)),
])
def test_parse_refund_create_answer(text: str, expected: p.RefundCreateAnswer) -> None:
    assert p.parse_refund_create_answer(text) == expected
    assert p.parse_refund_create_answer(p.build_refund_create_answer(
        expected.success, message=expected.message, request_id=expected.request_id)) == expected


@pytest.mark.parametrize("text", ["", "null", "[]", '{"success":"yes"}', '{"message":"x"}',
                                  '{"success":true,"requestId":5}', "<html/>"])
def test_parse_refund_create_answer_rejects(text: str) -> None:
    with pytest.raises(p.ProtocolError):
        p.parse_refund_create_answer(text)


def test_parse_refund_state_answer() -> None:
    state = p.parse_refund_state_answer('{"requestId":"abc","amount":1.000000,"label":"finished"}')
    assert state == p.RefundState("abc", Decimal("1"), "finished")
    assert isinstance(state.amount, Decimal) and str(state.amount) == "1.000000"
    assert p.parse_refund_state_answer('{"requestId":"abc","amount":5,"label":"processing"}').amount == 5
    assert p.parse_refund_state_answer('{"requestId":"abc","amount":"2.50","label":"canceled"}').amount == (
        Decimal("2.50"))
    error = p.parse_refund_state_answer('{"message":"Id is invalid or request id does not exist"}')
    assert error == p.RefundState(None, None, None, "Id is invalid or request id does not exist")


@pytest.mark.parametrize("text", ['{"requestId":"a","amount":-1}', '{"requestId":"a","amount":true}',
                                  '{"requestId":"a","amount":"1,5"}', '{"requestId":1}', "{"])
def test_parse_refund_state_answer_rejects(text: str) -> None:
    with pytest.raises(p.ProtocolError):
        p.parse_refund_state_answer(text)


def test_refund_state_answer_round_trip() -> None:
    state = p.RefundState("abc", Decimal("1"), "finished")
    text = p.build_refund_state_answer(state)
    assert text == '{"requestId":"abc","amount":1.000000,"label":"finished"}'
    assert p.parse_refund_state_answer(text) == state
    missing = p.build_refund_state_answer(p.RefundState(None, None, None))
    assert p.parse_refund_state_answer(missing).message == "Id is invalid or request id does not exist"
    with pytest.raises(ValueError):
        p.build_refund_state_answer(p.RefundState("abc", Decimal("1"), "done"))


# ------------------------------------------------------------------------------------------------
# Endpoints
# ------------------------------------------------------------------------------------------------


def test_endpoints_standard() -> None:
    endpoints = p.endpoints_from_payment_url("https://auth.robokassa.ru/Merchant/Index.aspx")
    assert endpoints == p.Endpoints(
        payment_url="https://auth.robokassa.ru/Merchant/Index.aspx",
        xml_service_url="https://auth.robokassa.ru/Merchant/WebService/Service.asmx",
        recurring_url="https://auth.robokassa.ru/Merchant/Recurring",
        refund_create_url="https://services.robokassa.ru/RefundService/Refund/Create",
        refund_state_url="https://services.robokassa.ru/RefundService/Refund/GetState",
    )
    assert endpoints.xml_method_url("OpStateExt") == (
        "https://auth.robokassa.ru/Merchant/WebService/Service.asmx/OpStateExt")
    # case and surrounding spaces do not make it "non-standard"
    assert p.endpoints_from_payment_url(" https://AUTH.robokassa.ru/merchant/index.aspx ") == endpoints


def test_endpoints_sandbox_prefix() -> None:
    endpoints = p.endpoints_from_payment_url("http://127.0.0.1:5000/sandbox/robokassa/Merchant/Index.aspx")
    prefix = "http://127.0.0.1:5000/sandbox/robokassa"
    assert endpoints == p.Endpoints(
        payment_url=f"{prefix}/Merchant/Index.aspx",
        xml_service_url=f"{prefix}/Merchant/WebService/Service.asmx",
        recurring_url=f"{prefix}/Merchant/Recurring",
        refund_create_url=f"{prefix}/RefundService/Refund/Create",
        refund_state_url=f"{prefix}/RefundService/Refund/GetState",
    )


def test_endpoints_other_host_root() -> None:
    endpoints = p.endpoints_from_payment_url("https://auth.robokassa.kz/Merchant/Index.aspx")
    assert endpoints.xml_service_url == "https://auth.robokassa.kz/Merchant/WebService/Service.asmx"
    assert endpoints.refund_create_url == "https://auth.robokassa.kz/RefundService/Refund/Create"


@pytest.mark.parametrize("url", [
    "", "auth.robokassa.ru/Merchant/Index.aspx", "ftp://auth.robokassa.ru/Merchant/Index.aspx",
    "javascript:alert(1)//Merchant/Index.aspx", "https:///Merchant/Index.aspx",
    "https://auth.robokassa.ru/Merchant/Payment/Index", "https://auth.robokassa.ru/Merchant/Index.aspx/",
    "https://auth.robokassa.ru/Merchant/Index.aspx?x=1", "https://auth.robokassa.ru/Merchant/Index.aspx#f",
    "https://auth.robokassa.ru/Index.aspx", "https://merchant.roboxchange.com/Index.aspx", None,
])
def test_endpoints_reject(url: object) -> None:
    with pytest.raises(ValueError):
        p.endpoints_from_payment_url(url)  # type: ignore[arg-type]
