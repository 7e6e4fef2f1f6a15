# mitmdump addon for bench/mitm: inject the same header moat injects, for
# the benchmark's upstream only. Run by bench/mitm, which sets the variables.
import os

from mitmproxy import http

SECRET = os.environ["MOAT_BENCH_SECRET"]
HOST = os.environ["MOAT_BENCH_HOST"]
PORT = int(os.environ["MOAT_BENCH_PORT"])


def request(flow: http.HTTPFlow) -> None:
    if flow.request.host == HOST and flow.request.port == PORT:
        flow.request.headers["Authorization"] = "Bearer " + SECRET
