"""DescribeInstances over 5,000 instances: through onepane's EC2 front end vs moto's server
directly, in the same run, on the same instances.

moto holds 5,000 instances; onepane has an EC2 location on that moto and has synced them into its
inventory, so both answer the same question about the same machines. Each call is one SigV4-signed
POST (botocore's signer, httpx) timed to the last byte of the response, so the figure is the
server's work, not the client's XML parsing (which is the same for both and printed apart).

    .venv/bin/python bench/ec2api.py [--instances 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import boto3
import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import moto_server, onepane, result, three_locations

BODY = "Action=DescribeInstances&Version=2016-11-15"


def timed_describe(http: httpx.Client, url: str, key: str, secret: str, region: str) -> tuple[float, int]:
    req = AWSRequest(method="POST", url=url, data=BODY,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(key, secret), "ec2", region).add_auth(req)
    t0 = time.perf_counter()
    r = http.post(url, content=BODY, headers=dict(req.headers.items()))
    elapsed = time.perf_counter() - t0
    r.raise_for_status()
    return elapsed, r.text.count("<instanceId>")


def known(http: httpx.Client, url: str, auth: dict[str, str]) -> int:
    count, cursor = 0, None
    while True:
        page = http.get(f"{url}/v1/instances", headers=auth,
                        params={"location": "aws", "limit": 1000, **({"cursor": cursor} if cursor else {})}
                        ).json()
        count += len(page["items"])
        if not (cursor := page["next_cursor"]):
            return count


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with moto_server() as moto, tempfile.TemporaryDirectory(prefix="onepane-bench-") as tmp:
        aws = boto3.client("ec2", endpoint_url=moto, region_name="us-east-1",
                           aws_access_key_id="k", aws_secret_access_key="s")
        left = args.instances
        while left:
            n = min(left, 1000)
            aws.run_instances(ImageId="ami-760aaa0f", InstanceType="t2.micro", MinCount=n, MaxCount=n)
            left -= n
        with onepane(Path(tmp), three_locations(moto)) as (url, token, _):
            auth = {"Authorization": f"Bearer {token}"}
            http = httpx.Client(timeout=300)
            t0 = time.perf_counter()
            while known(http, url, auth) < args.instances:  # the start-up sync is at it
                if time.perf_counter() - t0 > 600:
                    raise SystemExit("onepane did not sync the instances within 10 minutes")
                time.sleep(0.5)
            print(f"onepane synced {args.instances} instances from moto in {time.perf_counter() - t0:.1f} s")
            keys = http.post(f"{url}/v1/access-keys", json={"name": "bench", "role": "viewer"},
                             headers=auth).json()
            ends = {"moto": (f"{moto}/", "k", "s", "us-east-1"),
                    "onepane": (f"{url}/ec2/", keys["access_key_id"], keys["secret_access_key"],
                                "onepane")}
            times: dict[str, list[float]] = {"moto": [], "onepane": []}
            for _ in range(args.rounds):  # interleaved, so drift in the machine hits both alike
                for name, (endpoint, key, secret, region) in ends.items():
                    elapsed, count = timed_describe(http, endpoint, key, secret, region)
                    if count != args.instances:
                        raise SystemExit(f"{name} returned {count} instances, not {args.instances}")
                    times[name].append(elapsed)
            onepane_client = boto3.client("ec2", endpoint_url=f"{url}/ec2/", region_name="onepane",
                                          aws_access_key_id=keys["access_key_id"],
                                          aws_secret_access_key=keys["secret_access_key"])
            for name, client in (("moto", aws), ("onepane", onepane_client)):
                t0 = time.perf_counter()
                client.describe_instances()
                print(f"boto3 end to end, {name}: {time.perf_counter() - t0:.2f} s (parsing included)")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, values in times.items():
        print(f"{name:8s} median {med[name] * 1000:7.0f} ms  min {min(values) * 1000:7.0f} ms  "
              f"max {max(values) * 1000:7.0f} ms  over {args.rounds} calls")
    result("ec2api_describe_vs_moto", med["onepane"] / med["moto"], "ratio", "<=", 1.0)


if __name__ == "__main__":
    main()
