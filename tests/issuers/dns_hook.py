"""A dns-01 hook for the tests: publishes the TXT record in pebble-challtestsrv's DNS.

Usage: dns_hook.py MANAGEMENT_URL [--record FILE] [--fail] [--sleep SECONDS]
Reads CERTFLEET_ACME_ACTION, CERTFLEET_ACME_TXT_NAME and CERTFLEET_ACME_TXT from
the environment, as the collector passes them.
"""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.request


def main(argv: list[str]) -> int:
    url = argv[0]
    opts = argv[1:]
    env = {k: v for k, v in os.environ.items() if k.startswith("CERTFLEET_ACME_")}
    if "--record" in opts:
        with open(opts[opts.index("--record") + 1], "a") as f:
            f.write(json.dumps({"argv": argv, "env": env}) + "\n")
    if "--sleep" in opts:
        time.sleep(float(opts[opts.index("--sleep") + 1]))
    if "--fail" in opts:
        print("something useless on stdout")
        print("the zone example.test is not managed here", file=sys.stderr)
        return 3
    if url == "-":
        return 0
    action = env["CERTFLEET_ACME_ACTION"]
    body = {"host": env["CERTFLEET_ACME_TXT_NAME"] + "."}
    if action == "present":
        body["value"] = env["CERTFLEET_ACME_TXT"]
    path = "/set-txt" if action == "present" else "/clear-txt"
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    with opener.open(req, timeout=10) as resp:
        return 0 if resp.status == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
