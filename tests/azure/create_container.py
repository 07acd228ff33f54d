"""Creates a blob container on an Azurite emulator (Litestream does not create it).

    create_container.py BLOB_ENDPOINT CONTAINER     e.g. http://127.0.0.1:10000/devstoreaccount1

Signs the request with Azurite's well-known development account key (Shared Key, as in
https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key).
"""
import base64
import hashlib
import hmac
import sys
import urllib.request
from email.utils import formatdate

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

endpoint, container = sys.argv[1].rstrip("/"), sys.argv[2]
date = formatdate(usegmt=True)
version = "2021-08-06"
to_sign = "\n".join(
    ["PUT", "", "", "", "", "", "", "", "", "", "", "",
     f"x-ms-date:{date}\nx-ms-version:{version}",
     f"/{ACCOUNT}/{ACCOUNT}/{container}\nrestype:container"]
)
signature = base64.b64encode(
    hmac.new(base64.b64decode(KEY), to_sign.encode(), hashlib.sha256).digest()
).decode()
req = urllib.request.Request(
    f"{endpoint}/{container}?restype=container",
    method="PUT",
    headers={
        "x-ms-date": date,
        "x-ms-version": version,
        "Authorization": f"SharedKey {ACCOUNT}:{signature}",
        "Content-Length": "0",
    },
)
with urllib.request.urlopen(req) as resp:
    assert resp.status == 201, resp.status
