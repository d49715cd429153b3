"""SigV4 checking against requests signed by botocore (an independent implementation of the signer)."""

from __future__ import annotations

import datetime

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from strongroom.control import sigv4

KEYS = {"AKIASTRONGROOMTEST01": "secret-key-of-the-test-0123456789abcdef"}


def _signed(body: bytes = b'{"MaxResults": 5}', secret: str = KEYS["AKIASTRONGROOMTEST01"],
            service: str = "cloudhsm", url: str = "http://127.0.0.1:8080/") -> AWSRequest:
    request = AWSRequest(method="POST", url=url, data=body, headers={
        "X-Amz-Target": "BaldrApiService.DescribeClusters", "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials("AKIASTRONGROOMTEST01", secret), service, "us-east-1").add_auth(request)
    return request


def _verify(request: AWSRequest, body: bytes | None = None, **kwargs):
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers["host"] = "127.0.0.1:8080"
    split = request.url.split("?", 1)
    return sigv4.verify("POST", "/", split[1] if len(split) > 1 else "", headers,
                        request.body if body is None else body, KEYS.get, **kwargs)


def test_a_botocore_signed_request_verifies():
    credential = _verify(_signed())
    assert credential == sigv4.Credential("AKIASTRONGROOMTEST01", credential.date, "us-east-1", "cloudhsm")


def test_a_request_with_a_query_string_verifies():
    assert _verify(_signed(url="http://127.0.0.1:8080/?b=2&a=1%202")).region == "us-east-1"


@pytest.mark.parametrize(("change", "code"), [
    (lambda r: _verify(r, body=b'{"MaxResults": 6}'), "InvalidSignatureException"),  # a tampered body
    (lambda r: _verify(_signed(secret="wrong")), "InvalidSignatureException"),
    (lambda r: _verify(_signed(service="cloudhsmv2")), "InvalidSignatureException"),
    (lambda r: sigv4.verify("POST", "/", "", {"host": "x"}, b"", KEYS.get), "MissingAuthenticationTokenException"),
    (lambda r: _verify(r, now=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)),
     "InvalidSignatureException"),
])
def test_bad_requests_get_the_errors_aws_answers(change, code):
    with pytest.raises(sigv4.SignatureError) as info:
        change(_signed())
    assert info.value.code == code


def test_an_unknown_access_key_is_an_unrecognized_client():
    request = _signed()
    request.headers["Authorization"] = request.headers["Authorization"].replace("AKIASTRONGROOMTEST01", "AKIAOTHER")
    with pytest.raises(sigv4.SignatureError) as info:
        _verify(request)
    assert info.value.code == "UnrecognizedClientException"


def test_a_tampered_signed_header_fails():
    request = _signed()
    request.headers.replace_header("X-Amz-Target", "BaldrApiService.DeleteCluster")
    with pytest.raises(sigv4.SignatureError) as info:
        _verify(request)
    assert info.value.code == "InvalidSignatureException"


def test_our_signer_is_what_the_verifier_and_botocore_compute():
    headers = sigv4.sign("POST", "http://127.0.0.1:8080/", {"X-Amz-Target": "BaldrApiService.DescribeClusters",
                                                              "Content-Type": "application/x-amz-json-1.1"},
                         b"{}", "AKIASTRONGROOMTEST01", KEYS["AKIASTRONGROOMTEST01"], "us-east-1")
    lower = {k.lower(): v for k, v in headers.items()}
    assert sigv4.verify("POST", "/", "", lower, b"{}", KEYS.get).access_key_id == "AKIASTRONGROOMTEST01"
    request = AWSRequest(method="POST", url="http://127.0.0.1:8080/", data=b"{}", headers={
        k: v for k, v in headers.items() if k not in ("Authorization", "X-Amz-Date")})
    signer = SigV4Auth(Credentials("AKIASTRONGROOMTEST01", KEYS["AKIASTRONGROOMTEST01"]), "cloudhsm", "us-east-1")
    request.context["timestamp"] = headers["X-Amz-Date"]
    signer._modify_request_before_signing = lambda r: r.headers.__setitem__("X-Amz-Date", headers["X-Amz-Date"])
    signer.add_auth(request)
    assert request.headers["Authorization"].split("Signature=")[1] == headers["Authorization"].split("Signature=")[1]
