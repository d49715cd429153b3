"""The cloudhsmv2 API through real boto3 and the AWS CLI against a real uvicorn server over HTTPS, verifying the
server's CA: clusters, tags, pagination, errors as the service shapes them."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

SUBNETS = ["subnet-0a1b2c3d", "subnet-0e1f2a3b", "subnet-0c4d5e6f"]


def _client(api, secret: str | None = None, key_id: str | None = None, region: str = "us-east-1"):
    return boto3.client("cloudhsmv2", endpoint_url=api.url, region_name=region, verify=api.ca,
                        aws_access_key_id=key_id or api.key_id, aws_secret_access_key=secret or api.secret,
                        config=Config(retries={"max_attempts": 1}))


def _code(call) -> str:
    with pytest.raises(ClientError) as info:
        call()
    return info.value.response["Error"]["Code"]


def test_clusters_are_created_described_filtered_paginated_and_deleted(api):
    hsm = _client(api)
    made = [hsm.create_cluster(HsmType="hsm2m.medium", SubnetIds=SUBNETS[:2],
                               TagList=[{"Key": "team", "Value": f"t{i}"}])["Cluster"] for i in range(4)]
    assert all(c["State"] == "CREATE_IN_PROGRESS" and c["ClusterId"].startswith("cluster-") for c in made)
    assert made[0]["SubnetMapping"] == {"us-east-1a": SUBNETS[0], "us-east-1b": SUBNETS[1]}
    ids = [c["ClusterId"] for c in made]
    [one] = hsm.describe_clusters(Filters={"clusterIds": [ids[0]]})["Clusters"]
    assert one["State"] == "UNINITIALIZED" and one["HsmType"] == "hsm2m.medium" and one["Hsms"] == []
    assert one["TagList"] == [{"Key": "team", "Value": "t0"}]
    assert isinstance(one["CreateTimestamp"].timestamp(), float)  # epoch seconds on the wire, parsed by botocore
    pages = hsm.get_paginator("describe_clusters").paginate(Filters={"clusterIds": ids},
                                                             PaginationConfig={"PageSize": 3})
    sizes = [len(page["Clusters"]) for page in pages]
    assert sizes == [3, 1]
    deleted = hsm.delete_cluster(ClusterId=ids[3])["Cluster"]
    assert deleted["State"] == "DELETE_IN_PROGRESS"
    assert hsm.describe_clusters(Filters={"clusterIds": [ids[3]]})["Clusters"][0]["State"] == "DELETED"
    time.sleep(1.1)  # the same request signed within the same second would be a replay (test_api_security)
    assert _code(lambda: hsm.delete_cluster(ClusterId=ids[3])) == "CloudHsmResourceNotFoundException"
    states = {c["ClusterId"]: c["State"] for c in hsm.describe_clusters(Filters={"states": ["UNINITIALIZED"]})[
        "Clusters"]}
    assert set(ids[:3]) <= set(states) and ids[3] not in states


def test_tags_are_added_listed_by_page_and_removed(api):
    hsm = _client(api)
    cluster_id = hsm.create_cluster(HsmType="hsm1.medium", SubnetIds=SUBNETS[:1])["Cluster"]["ClusterId"]
    hsm.tag_resource(ResourceId=cluster_id, TagList=[{"Key": f"k{i:02}", "Value": str(i)} for i in range(30)])
    pages = list(hsm.get_paginator("list_tags").paginate(ResourceId=cluster_id, PaginationConfig={"PageSize": 12}))
    assert [len(p["TagList"]) for p in pages] == [12, 12, 6]
    assert pages[0]["TagList"][0] == {"Key": "k00", "Value": "0"}
    hsm.untag_resource(ResourceId=cluster_id, TagKeyList=[f"k{i:02}" for i in range(25)])
    assert [t["Key"] for t in hsm.list_tags(ResourceId=cluster_id)["TagList"]] == [f"k{i}" for i in range(25, 30)]
    assert _code(lambda: hsm.tag_resource(ResourceId=cluster_id, TagList=[
        {"Key": f"x{i}", "Value": ""} for i in range(46)])) == "CloudHsmResourceLimitExceededException"
    assert _code(lambda: hsm.list_tags(ResourceId="cluster-aaaaaaaaaaa")) == "CloudHsmResourceNotFoundException"


@pytest.mark.parametrize("call", [
    lambda h: h.create_cluster(HsmType="hsm9.huge", SubnetIds=SUBNETS[:1]),
    lambda h: h.create_cluster(HsmType="hsm1.medium", SubnetIds=["not-a-subnet"]),
    lambda h: h.create_cluster(HsmType="hsm1.medium", SubnetIds=SUBNETS[:1], Mode="SOMETIMES"),
    lambda h: h.describe_clusters(MaxResults=26),
    lambda h: h.describe_clusters(Filters={"states": ["MELTING"]}),
    lambda h: h.describe_clusters(NextToken="!!!"),
    lambda h: h.modify_cluster(ClusterId="cluster-1", BackupRetentionPolicy={"Type": "DAYS", "Value": "90"}),
])
def test_invalid_arguments_are_invalid_requests(api, call):
    assert _code(lambda: call(_client(api))) == "CloudHsmInvalidRequestException"


def test_wrong_secret_unknown_key_and_tampered_body_get_sigv4_errors(api):
    assert _code(lambda: _client(api, secret="wrong").describe_clusters()) == "InvalidSignatureException"
    assert _code(lambda: _client(api, key_id="AKIAUNKNOWN").describe_clusters()) \
        == "UnrecognizedClientException"
    client = _client(api)

    def tamper(request, **_):
        request.body = b'{"MaxResults": 7}'  # after signing

    client.meta.events.register_last("before-send.cloudhsmv2.DescribeClusters", tamper)
    assert _code(lambda: client.describe_clusters(MaxResults=5)) == "InvalidSignatureException"


def test_the_aws_cli_describes_clusters(api):
    cluster_id = _client(api).create_cluster(HsmType="hsm1.medium", SubnetIds=SUBNETS[1:2])["Cluster"][
        "ClusterId"]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": api.key_id, "AWS_SECRET_ACCESS_KEY": api.secret,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    done = subprocess.run([sys.executable, "-m", "awscli", "cloudhsmv2", "describe-clusters", "--endpoint-url",
                           api.url, "--ca-bundle", api.ca, "--filters", f"clusterIds={cluster_id}", "--output", "json"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    [cluster] = json.loads(done.stdout)["Clusters"]
    assert cluster["ClusterId"] == cluster_id and cluster["State"] == "UNINITIALIZED"


def test_region_unsigned_target_content_type_nesting_duplicates_and_size_are_refused(api):
    from strongroom.control import sigv4

    assert _code(lambda: _client(api, region="eu-west-1").describe_clusters()) == "InvalidSignatureException"
    context = ssl.create_default_context(cafile=api.ca)

    def post(body: bytes, headers: dict, sign_target: bool = True) -> tuple[int, dict]:
        signed = {k: v for k, v in headers.items() if sign_target or k != "X-Amz-Target"}
        final = sigv4.sign("POST", api.url + "/", signed, body, api.key_id, api.secret, "us-east-1")
        final.update(headers)
        request = urllib.request.Request(api.url + "/", data=body, headers=final, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30, context=context) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    json_headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "BaldrApiService.DescribeClusters"}
    assert post(b"{}", json_headers)[0] == 200
    status, error = post(b"{}", json_headers, sign_target=False)  # a replay as another operation would pass
    assert (status, error["__type"]) == (400, "InvalidSignatureException")
    status, error = post(b"{}", {**json_headers, "Content-Type": "text/plain"})
    assert (status, error["__type"]) == (400, "SerializationException")
    status, error = post(b"[" * 100_000 + b"]" * 100_000, json_headers)
    assert (status, error["__type"]) == (400, "SerializationException")
    try:  # the server answers before reading the rest, and may close while the client still sends it
        status, error = post(b"{" + b" " * (2 * 1024 * 1024) + b"}", json_headers)
        assert (status, error["__type"]) == (400, "SerializationException")
    except urllib.error.URLError as exc:
        assert isinstance(exc.reason, (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError))
    tags = {**json_headers, "X-Amz-Target": "BaldrApiService.CreateCluster"}
    status, error = post(json.dumps({"HsmType": "hsm1.medium", "SubnetIds": SUBNETS[:1], "TagList": [
        {"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]}).encode(), tags)
    assert (status, error["__type"]) == (400, "CloudHsmInvalidRequestException")
    status, error = post(json.dumps({"HsmType": "hsm1.medium", "SubnetIds": SUBNETS[:1],
                                     "BackupRetentionPolicy": {"Type": "DAYS", "Value": "9" * 5000}}).encode(), tags)
    assert (status, error["__type"]) == (400, "CloudHsmInvalidRequestException")
