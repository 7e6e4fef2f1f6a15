# The agent's side of the TLS-termination test in Python: urllib through
# moat (ProxyHandler), trusting only the bundle `moat ca bundle` wrote, and
# sending its placeholder where a key would go.
#
# usage: python3 urllib-client.py PROXY_URL BUNDLE URL
import os
import ssl
import sys
import urllib.request

proxy, bundle, url = sys.argv[1:4]
ctx = ssl.create_default_context(cafile=bundle)
opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({"https": proxy}),
    urllib.request.HTTPSHandler(context=ctx),
)
req = urllib.request.Request(url, headers={"Authorization": "Bearer " + os.environ["SVC_TOKEN"]})
with opener.open(req, timeout=20) as resp:
    print("status", resp.status)
    for k, v in resp.headers.items():
        print(f"{k}: {v}")
    print()
    sys.stdout.write(resp.read().decode())
