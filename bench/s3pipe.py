"""The raw side of `bench backup`: stream stdin into an S3 object, or an object to stdout (boto3).

What a person does by hand instead of the job: `pg_dump | aws s3 cp - s3://bucket/key` and back
(the AWS CLI is boto3's sibling; boto3 is already here as moto's dependency). Multipart, 8 MiB
parts, several in parallel: boto3's defaults, as the CLI's.

Run: `python -m bench.s3pipe put|get ENDPOINT BUCKET KEY` with AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY in the environment.
"""

from __future__ import annotations

import sys

import boto3


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] not in ("put", "get"):
        print("usage: python -m bench.s3pipe put|get ENDPOINT BUCKET KEY", file=sys.stderr)
        return 2
    action, endpoint, bucket, key = argv
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    if action == "put":
        client.upload_fileobj(sys.stdin.buffer, bucket, key)
    else:
        client.download_fileobj(bucket, key, sys.stdout.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
