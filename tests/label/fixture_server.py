#!/usr/bin/env python3
"""A fake OpenAI-compatible server for tests/label/test_label.sh (standard library only).

  fixture_server.py serve PORT_FILE LOG_FILE   listen on a free 127.0.0.1 port (written to
                                               PORT_FILE); one JSON line per request in LOG_FILE
  fixture_server.py check ITEMS KEYPHRASES OUT every row of the judgments TSV OUT has the grade
                                               this server gives its pair, no pair twice

The mode is the first path segment: POST /MODE/v1/chat/completions (or /MODE/v1/embeddings);
MODE~TAG is MODE with request counts of its own (logged as "MODE~TAG").
The pair is read from the default prompt's "Item title: ..." and "Keyphrase: ..." lines; its
grade is 1 + md5(title TAB keyphrase) % 3. Modes (n = the how-manyth request for this pair):
  good       the grade
  malformed  always a malformed answer, the kind chosen by the pair (see MALFORMED)
  flaky      n = 1 malformed, then good
  429        n = 1: HTTP 429 with Retry-After: 1, then good
  500        n <= 2: HTTP 500, then good
  slow       n = 1: the reply comes after 2 s (beyond the client's timeout), then good
  slowall    every reply after 50 ms
  echo       HTTP 400 whose body quotes the request's Authorization header
  401        HTTP 401
  schema     good, but HTTP 400 unless response_format is the json_schema of the grade
  noformat   good, but HTTP 400 if the request has a response_format
  embed      (embeddings endpoint) two vectors whose cosine is (grade - 1) / 2
A request without model, messages (system + user) or temperature 0 gets HTTP 400."""
import hashlib
import json
import math
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MALFORMED = [
    ("not-json", lambda g: "Grade: %d" % g),
    ("wrong-type", lambda g: json.dumps({"grade": str(g)})),
    ("out-of-scale", lambda g: json.dumps({"grade": g + 7})),
    ("missing", lambda g: json.dumps({"score": g})),
    ("prose", lambda g: 'Sure! Here is my answer: {"grade": %d}' % g),
]


def h(title, kp):
    return int(hashlib.md5((title + "\t" + kp).encode()).hexdigest(), 16)


def grade(title, kp):
    return 1 + h(title, kp) % 3


def malformed_kind(title, kp):
    return MALFORMED[(h(title, kp) >> 8) % len(MALFORMED)]


counts = {}
lock = threading.Lock()
LOG = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, obj=None, text=None, headers=()):
        body = (text if text is not None else json.dumps(obj)).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout)

    def do_POST(self):
        t = time.time()
        n_in = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n_in)
        parts = self.path.strip("/").split("/")
        tag, endpoint = parts[0], parts[-1]
        mode = tag.split("~")[0]
        try:
            req = json.loads(raw)
        except ValueError:
            req = {}
        title = kp = ""
        bad = None
        if endpoint == "embeddings":
            inp = req.get("input")
            if not req.get("model") or not isinstance(inp, list) or len(inp) != 2:
                bad = "bad embeddings request"
            else:
                title, kp = inp
        else:
            msgs = req.get("messages") or []
            roles = [m.get("role") for m in msgs]
            user = msgs[-1].get("content", "") if msgs else ""
            m1 = re.search(r"^Item title: (.*)$", user, re.M)
            m2 = re.search(r"^Keyphrase: (.*)$", user, re.M)
            if not req.get("model") or roles != ["system", "user"] or req.get("temperature") != 0:
                bad = "bad chat request"
            elif not m1 or not m2:
                bad = "no pair in the prompt"
            else:
                title, kp = m1.group(1), m2.group(1)
        key = (tag, title, kp)
        with lock:
            counts[key] = n = counts.get(key, 0) + 1
        rf = req.get("response_format")
        status, extra, delay = 200, {}, 0.0
        g = grade(title, kp)
        content = json.dumps({"grade": g})
        if bad:
            status = 400
        elif mode == "malformed" or (mode == "flaky" and n == 1):
            kind, make = malformed_kind(title, kp)
            extra["kind"] = kind
            content = make(g)
        elif mode == "429" and n == 1:
            status = 429
        elif mode == "500" and n <= 2:
            status = 500
        elif mode == "slow" and n == 1:
            delay = 2.0
        elif mode == "slowall":
            delay = 0.05
        elif mode == "echo":
            status = 400
            bad = "you sent " + self.headers.get("Authorization", "(nothing)")
        elif mode == "401":
            status, bad = 401, "invalid api key"
        elif mode == "schema":
            want = {"type": "object",
                    "properties": {"grade": {"type": "integer", "minimum": 1, "maximum": 3}},
                    "required": ["grade"], "additionalProperties": False}
            js = (rf or {}).get("json_schema") or {}
            if (rf or {}).get("type") != "json_schema" or js.get("schema") != want:
                status, bad = 400, "response_format is not the grade schema"
        elif mode == "noformat" and rf is not None:
            status, bad = 400, "response_format not supported"
        with lock:
            LOG.write(json.dumps({"t": t, "mode": tag, "endpoint": endpoint, "title": title,
                                  "keyphrase": kp, "n": n, "status": status,
                                  "response_format": (rf or {}).get("type"),
                                  "auth": self.headers.get("Authorization") is not None,
                                  **extra}) + "\n")
            LOG.flush()
        time.sleep(delay)  # logged on arrival: a request the client gave up on is counted too
        usage = {"prompt_tokens": 40, "completion_tokens": 5, "total_tokens": 45}
        if status == 429:
            self.reply(429, {"error": {"message": "rate limited"}}, headers=[("Retry-After", "1")])
        elif status != 200:
            self.reply(status, {"error": {"message": bad or "server error"}})
        elif endpoint == "embeddings":
            c = (g - 1) / 2.0
            self.reply(200, {"data": [{"index": 0, "embedding": [1.0, 0.0]},
                                      {"index": 1, "embedding": [c, math.sqrt(1 - c * c)]}],
                             "usage": {"prompt_tokens": 10, "total_tokens": 10}})
        else:
            self.reply(200, {"id": "x", "object": "chat.completion",
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": content}}],
                             "usage": usage})


def serve(port_file, log_file):
    global LOG
    LOG = open(log_file, "a")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    with open(port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(port_file + ".tmp", port_file)
    srv.serve_forever()


def table(path):
    rows = [line.rstrip("\n").split("\t") for line in open(path, encoding="utf-8")][1:]
    return {r[0]: r[1] for r in rows if len(r) >= 2}


def check(items_path, keys_path, out_path):
    items, keys = table(items_path), table(keys_path)
    seen, bad = set(), 0
    lines = open(out_path, encoding="utf-8").read().split("\n")
    assert lines[0] == "pair_id\tkeyphrase_id\titem_id\trelevance", "header"
    for line in lines[1:]:
        if not line:
            continue
        pid, kid, iid, rel = line.split("\t")
        if (iid, kid) in seen:
            print("duplicate pair", iid, kid)
            bad += 1
        seen.add((iid, kid))
        want = grade(items[iid], keys[kid])
        if abs(float(rel) - want) > 1e-3:
            print("pair", iid, kid, "relevance", rel, "want", want)
            bad += 1
    print("rows", len(seen), "bad", bad)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
