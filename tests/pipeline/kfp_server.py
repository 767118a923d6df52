"""A loopback HTTP server that answers the KFP v2beta1 REST paths kfp.Client calls, and records them.

Paths and JSON field names come from the installed kfp_server_api (2.17): experiments are
listed (``GET /apis/v2beta1/experiments``) then created (``POST``), runs are created
(``POST /apis/v2beta1/runs``) and read (``GET /apis/v2beta1/runs/{id}``), recurring runs are
created (``POST /apis/v2beta1/recurringruns``), listed, and disabled
(``POST /apis/v2beta1/recurringruns/{id}:disable``); with ``submit --upload`` a pipeline is looked up
(``GET /apis/v2beta1/pipelines``), uploaded (``POST .../pipelines/upload``, multipart) or given a
new version (``POST .../pipelines/upload_version``), and its versions listed.
"""

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PREFIX = "/apis/v2beta1"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    body: dict | None


@dataclass
class FakeKfp:
    requests: list[Recorded] = field(default_factory=list)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    pipelines: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, dict] = field(default_factory=dict)
    recurring_runs: dict[str, dict] = field(default_factory=dict)
    final_state: str = "SUCCEEDED"
    # States the GET of a run answers in turn (the last one repeats), e.g. ["RUNNING", "CANCELING",
    # "CANCELED"]; empty: final_state at once.
    state_sequence: list[str] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)

    def _state_of(self, run_id: str) -> str:
        if not self.state_sequence:
            return self.final_state
        n = self.polls.get(run_id, 0)
        self.polls[run_id] = n + 1
        return self.state_sequence[min(n, len(self.state_sequence) - 1)]

    def _add_version(self, pid: str, name: str) -> dict:
        vid = f"ver-{len(self.versions) + 1}"
        self.versions[vid] = {
            "pipeline_id": pid,
            "pipeline_version_id": vid,
            "display_name": name,
            "created_order": len(self.versions),
        }
        return self.versions[vid]

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def handle(self, method: str, path: str, query: dict, body) -> tuple[int, dict]:
        self.requests.append(Recorded(method, path, query, body))
        if path == f"{PREFIX}/pipelines" and method == "GET":
            name = _filter_value(query)
            found = [p for p in self.pipelines.values() if p["display_name"] == name]
            return 200, {"pipelines": found, "total_size": len(found)} if found else {}
        if path == f"{PREFIX}/pipelines/upload" and method == "POST":
            pid = f"pl-{len(self.pipelines) + 1}"
            self.pipelines[pid] = {"pipeline_id": pid, "display_name": query["name"][0]}
            self._add_version(pid, query["name"][0])
            return 200, self.pipelines[pid]
        if path == f"{PREFIX}/pipelines/upload_version" and method == "POST":
            pid = query["pipelineid"][0]
            if pid not in self.pipelines:
                return 404, {"error": "pipeline not found", "code": 5}
            return 200, self._add_version(pid, query["name"][0])
        if path.startswith(f"{PREFIX}/pipelines/") and path.endswith("/versions") and method == "GET":
            pid = path.split("/")[-2]
            found = sorted(
                (v for v in self.versions.values() if v["pipeline_id"] == pid),
                key=lambda v: v["created_order"],
                reverse="desc" in query.get("sort_by", [""])[0],
            )
            return 200, {"pipeline_versions": found, "total_size": len(found)}
        if path == f"{PREFIX}/healthz":
            return 200, {"multi_user": False, "commit_sha": "fake", "tag_name": "2.17.0"}
        if path == f"{PREFIX}/experiments" and method == "GET":
            name = _filter_value(query)
            found = [e for e in self.experiments.values() if name is None or e["display_name"] == name]
            return 200, {"experiments": found, "total_size": len(found)} if found else {}
        if path == f"{PREFIX}/experiments" and method == "POST":
            exp = {**body, "experiment_id": f"exp-{len(self.experiments) + 1}"}
            self.experiments[exp["experiment_id"]] = exp
            return 200, exp
        if path == f"{PREFIX}/runs" and method == "POST":
            run = {**body, "run_id": f"run-{len(self.runs) + 1}", "state": "PENDING"}
            self.runs[run["run_id"]] = run
            return 200, run
        if path.startswith(f"{PREFIX}/runs/") and method == "GET":
            run = self.runs.get(path.rsplit("/", 1)[1])
            if run is None:
                return 404, {"error": "run not found", "code": 5}
            return 200, {**run, "state": self._state_of(run["run_id"])}
        if path == f"{PREFIX}/recurringruns" and method == "POST":
            job = {**body, "recurring_run_id": f"rr-{len(self.recurring_runs) + 1}", "status": "ENABLED"}
            self.recurring_runs[job["recurring_run_id"]] = job
            return 200, job
        if path == f"{PREFIX}/recurringruns" and method == "GET":
            name = _filter_value(query)
            found = [j for j in self.recurring_runs.values() if name is None or j["display_name"] == name]
            return 200, {"recurringRuns": found, "total_size": len(found)} if found else {}
        if path.startswith(f"{PREFIX}/recurringruns/") and path.endswith(":disable") and method == "POST":
            rid = path[len(f"{PREFIX}/recurringruns/") : -len(":disable")]
            if rid not in self.recurring_runs:
                return 404, {"error": "recurring run not found", "code": 5}
            self.recurring_runs[rid]["mode"] = "DISABLE"
            return 200, {}
        return 404, {"error": f"fake KFP does not serve {method} {path}", "code": 5}


def _filter_value(query: dict) -> str | None:
    raw = query.get("filter", [None])[0]
    if not raw:
        return None
    predicates = json.loads(raw).get("predicates", [])
    for p in predicates:
        if p.get("key") in ("display_name", "name"):
            return p.get("string_value", p.get("stringValue"))
    return None


def serve(fake: FakeKfp):
    """Start the server on a free loopback port; returns (server, url)."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw:
                body = None
            elif self.headers.get("Content-Type", "").startswith("multipart/form-data"):
                body = raw  # a pipeline upload: kept as bytes
            else:
                body = json.loads(raw)
            status, payload = fake.handle(method, parts.path, parse_qs(parts.query), body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            self._answer("GET")

        def do_POST(self):  # noqa: N802
            self._answer("POST")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
