"""A source's subject VLM behind an OpenAI-compatible chat-completions endpoint, on loopback by
default: `python -m benchmark serve --world tiny` (or `--config run.toml`). It lets any tool that
speaks the API ask the subject, and it is what the tests point the endpoint explainer at to check
that it gives the in-process answers.

It implements the request and response shapes the endpoint explainer uses: `POST
/v1/chat/completions` with one user turn of `image_url` parts (base64 data URLs) and one text part,
`max_tokens`, and optionally a final partial assistant turn continued with
`continue_final_message` (vLLM's extension); greedy decoding whatever the temperature; `usage`
counts the prompt (image tokens included) and the answer. `GET /v1/models` lists the one model.
Requests are answered one at a time (the model is not shared between threads). A request that fails
answers 500 with the error's message, so clients retry it; one the answerer refuses for good
(`Refused`) or cannot read answers its own 4xx status, as an OpenAI-compatible server does.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import torch

from benchmark.explainers import Answer
from benchmark.explainers.endpoint import image_from_data_url

AnswerFn = Callable[[list[np.ndarray], str, str, int], Answer]
"""(images, prompt, answer prefix, max tokens) -> the answer."""


class Refused(Exception):
    """A request refused for good (a 4xx status: retrying it cannot help)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def subject_answerer(source) -> AnswerFn:
    """The source's subject VLM, unsteered, through the steering engine: what `Context.answer` asks."""
    from benchmark.steering.engine import SteeringEngine

    engine = SteeringEngine(source.vlm, source.layer, batch_size=1)

    def answer(images: list[np.ndarray], prompt: str, prefix: str, max_tokens: int) -> Answer:
        before = dict(engine.counts)
        text = engine.answer(images, prompt, torch.zeros(1, source.sae().d_in), None, max_tokens, prefix)[0]
        return Answer(text, *(engine.counts[k] - before.get(k, 0) for k in ("prompt_tokens", "answer_tokens")))

    return answer


def make_server(answer: AnswerFn, model: str, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server answering with `answer`, not yet serving (`serve_forever`); port 0 picks a free one."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.rstrip("/").endswith("/models"):
                return self._send(200, {"object": "list", "data": [{"id": model, "object": "model"}]})
            self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            if not self.path.rstrip("/").endswith("/chat/completions"):
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            try:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                images, prompt, prefix = read_messages(request)
            except (ValueError, KeyError, TypeError) as e:  # not a request this server can read
                return self._send(400, {"error": {"message": f"{type(e).__name__}: {e}",
                                                  "type": "invalid_request_error"}})
            try:
                with lock:
                    result = answer(images, prompt, prefix, int(request.get("max_tokens") or 64))
            except Refused as e:
                return self._send(e.status, {"error": {"message": str(e), "type": "invalid_request_error"}})
            except Exception as e:  # a failing model: the client sees why, and may retry
                return self._send(500, {"error": {"message": f"{type(e).__name__}: {e}"}})
            self._send(200, {
                "id": f"chatcmpl-{time.time_ns()}", "object": "chat.completion", "created": int(time.time()),
                "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                             "message": {"role": "assistant", "content": result.text}}],
                "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.answer_tokens,
                          "total_tokens": result.prompt_tokens + result.answer_tokens}})

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:  # quiet: a run's progress bars share the terminal
            pass

    return ThreadingHTTPServer((host, port), Handler)


def read_messages(request: dict) -> tuple[list[np.ndarray], str, str]:
    """(images, prompt, answer prefix) of a request: one user turn, then optionally the partial
    assistant turn that `continue_final_message` continues."""
    messages = request.get("messages") or []
    if not messages or messages[0].get("role") != "user":
        raise ValueError("expected a user turn first")
    prefix = ""
    if len(messages) == 2 and messages[1].get("role") == "assistant" and request.get("continue_final_message"):
        prefix = messages[1].get("content") or ""
    elif len(messages) != 1:
        raise ValueError("expected one user turn (and a continued assistant turn)")
    content = messages[0]["content"]
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    images = [image_from_data_url(p["image_url"]["url"]) for p in parts if p.get("type") == "image_url"]
    prompt = " ".join(p["text"] for p in parts if p.get("type") == "text")
    return images, prompt, prefix
