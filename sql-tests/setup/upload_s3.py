"""Copies a file:// replica into an S3 bucket in Litestream's S3 layout.

    upload_s3.py ENDPOINT BUCKET PREFIX REPLICA_DIR

file://  <dir>/ltx/<level>/<name>.ltx   becomes   s3://BUCKET/PREFIX/<level as %04x>/<name>.ltx
(the layout `litestream replicate` writes to S3; the live tests check it on its own files).
Runs with the moto venv's Python, which has boto3.
"""
import sys
from pathlib import Path

import boto3

endpoint, bucket, prefix, replica = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
s3.create_bucket(Bucket=bucket)
n = 0
for f in sorted(Path(replica).glob("ltx/*/*.ltx")):
    level = int(f.parent.name)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/{level:04x}/{f.name}", Body=f.read_bytes())
    n += 1
print(f"uploaded {n} LTX files to s3://{bucket}/{prefix}", file=sys.stderr)
