#!/usr/bin/env python3
"""Measures botocore's SigV4 signing rate on the request bench/sign_bench.cpp signs.

Each iteration builds a fresh AWSRequest (add_auth adds headers to it, so botocore needs a new one
per signature) and signs it with SigV4Auth, as botocore does for every API call. The rate is per
second of this process's CPU time, as Google Benchmark reports sign_bench's, so that other load on
the machine skews neither. Prints one JSON line: {"botocore_signatures_per_second": N}.
"""
import argparse
import json
import time

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# Keep in step with bench/sign_bench.cpp: same URL, headers, body and credentials.
REGION = "us-east-1"
URL = "https://redshift-data.us-east-1.amazonaws.com/"
BODY = (
    '{"ClusterIdentifier":"analytics-cluster-1","Database":"dev","DbUser":"tasker",'
    '"Sql":"CALL etl.load_daily_orders(:run_date, :source)","Parameters":[{"name":"run_date",'
    '"value":"2024-05-01"},{"name":"source","value":"s3://landing/orders/"}],'
    '"StatementName":"tasker:load_daily_orders:7f3c2a","WithEvent":true,'
    '"ClientToken":"0b8f6f2e-5d0a-4c4e-9a51-3f7d2a9c1e88"}'
)
HEADERS = {
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": "RedshiftData.ExecuteStatement",
    "Content-Length": str(len(BODY)),
    "X-Amzn-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
}
ACCESS_KEY_ID = "ASIAIOSFODNN7EXAMPLE"
SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
# A Lambda session token is about 1 KB; this one has the same length and alphabet.
SESSION_TOKEN = ("IQoJb3JpZ2luX2VjEXAMPLE/" * 40)[:960]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds to measure")
    args = parser.parse_args()

    credentials = Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN)
    signer = SigV4Auth(credentials, "redshift-data", REGION)

    def sign_once() -> None:
        request = AWSRequest(method="POST", url=URL, data=BODY, headers=dict(HEADERS))
        signer.add_auth(request)

    for _ in range(200):  # warm-up
        sign_once()
    count = 0
    start = time.process_time()
    deadline = start + args.seconds
    now = start
    while now < deadline:
        for _ in range(100):
            sign_once()
        count += 100
        now = time.process_time()
    print(json.dumps({"botocore_signatures_per_second": round(count / (now - start))}))


if __name__ == "__main__":
    main()
