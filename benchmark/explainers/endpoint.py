"""Any OpenAI-compatible chat-completions endpoint that takes images as the explainer (a vLLM or
SGLang server, a hosted API), through the `openai` client.

- Images go as PNG data URLs (lossless: the endpoint sees the pixels the subject would), before
  the prompt in one user turn, as the subject's chat template puts them.
- The answer prefix the subject is forced to begin with goes as a partial assistant turn with
  vLLM's `continue_final_message` (`continue_prefix = false` for an API that has no such option:
  the prefix is then left out). Greedy: temperature 0.
- Requests run `concurrency` at a time; the client retries a transient failure (a dropped
  connection, a timeout, 408/409/429/5xx) up to `retries` times with exponential backoff. A request
  refused for good (400 a request it cannot take, 401/403 the key, 404 the model or route) or still
  failing after the retries stops the run with one line saying what to fix; the answers stored so
  far are kept.
- Each answer is appended to a store keyed by the endpoint's identity and a hash of the whole
  request (model, messages with the images, tokens) as it arrives, so a killed run resumes where it
  stopped and a request is never paid for twice. Explanations are cached again per method
  (`benchmark.explaining.explain`), keyed by this identity.
- What it cost is the provider's reported usage (prompt and completion tokens).
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.cache import config_hash
from benchmark.explainers import EXPLAINERS, Answer
from benchmark.identity import code_identity
from benchmark.registry import UsageError
from benchmark.results.rows import RowStore


@dataclass(frozen=True)
class EndpointSettings:
    base_url: str
    """The endpoint's base URL, e.g. http://localhost:8000/v1."""
    model: str
    """The model name the endpoint serves (what `/v1/models` lists)."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (the key itself never goes in a config
    or a cache key); None: no key."""
    concurrency: int = 8
    """Requests in flight at once."""
    retries: int = 6
    """Retries of a transient failure, with exponential backoff."""
    timeout: float = 120.0
    """Seconds one request may take."""
    continue_prefix: bool = True
    """Send the answer prefix as a partial assistant turn (vLLM's continue_final_message)."""

    def __post_init__(self):
        if self.concurrency < 1 or self.retries < 0 or self.timeout <= 0:
            raise UsageError(f"[explainer] concurrency must be at least 1, retries at least 0 and timeout positive, not "
                             f"{self.concurrency}, {self.retries}, {self.timeout}")


class EndpointExplainer:
    settings = EndpointSettings

    def __init__(self, settings: EndpointSettings, cache_dir: Path):
        self.config = settings
        self.store = RowStore(Path(cache_dir) / f"{self.identity}.jsonl")
        self._done = {row["key"]: row for row in self.store.load() if "key" in row}
        self._lock = threading.Lock()

    @cached_property
    def identity(self) -> str:
        """The endpoint and model, whether the prefix is sent, and this code; not the key, the
        concurrency, the retries or the timeout."""
        return config_hash({"base_url": self.config.base_url.rstrip("/"), "model": self.config.model,
                            "continue_prefix": self.config.continue_prefix, "code": code_identity(EndpointExplainer)})

    def check(self) -> None:
        name = self.config.api_key_env
        if name is not None and not os.environ.get(name):
            raise UsageError(f"[explainer] api_key_env {name!r}: that environment variable is not set")

    @cached_property
    def client(self):
        from openai import OpenAI

        key = os.environ[self.config.api_key_env] if self.config.api_key_env else "none"
        return OpenAI(base_url=self.config.base_url, api_key=key, max_retries=self.config.retries,
                      timeout=self.config.timeout)

    def answer(self, images_BNHWC: np.ndarray, prompt: str, max_new_tokens: int, answer_prefix: str) -> list[Answer]:
        requests = [self.request(row, prompt, max_new_tokens, answer_prefix) for row in images_BNHWC]
        keys = [hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest() for r in requests]
        todo = {k: r for k, r in zip(keys, requests) if k not in self._done}
        if todo:
            with ThreadPoolExecutor(self.config.concurrency) as pool:
                list(pool.map(self._send, todo.items()))
        return [Answer(self._done[k]["text"], self._done[k]["prompt_tokens"], self._done[k]["answer_tokens"])
                for k in keys]

    def request(self, images_NHWC: np.ndarray, prompt: str, max_new_tokens: int, answer_prefix: str) -> dict:
        """The chat-completions request for one row: its images as data URLs, then the prompt."""
        content = [*({"type": "image_url", "image_url": {"url": data_url(image)}} for image in images_NHWC),
                   {"type": "text", "text": prompt}]
        request = {"model": self.config.model, "messages": [{"role": "user", "content": content}],
                   "max_tokens": max_new_tokens, "temperature": 0.0}
        if answer_prefix and self.config.continue_prefix:
            request["messages"].append({"role": "assistant", "content": answer_prefix})
            request["extra_body"] = {"continue_final_message": True, "add_generation_prompt": False}
        return request

    def _send(self, item: tuple[str, dict]) -> None:
        from openai import APIConnectionError, APIStatusError

        key, request = item
        where = f"[explainer] {self.config.base_url} (model {self.config.model})"
        try:
            response = self.client.chat.completions.create(**request)
        except APIStatusError as e:
            fix = FIXES.get(e.status_code, f"still failing after {self.config.retries} retries")
            raise UsageError(f"{where} answered {e.status_code}: {_message(e)}; {fix}") from None
        except APIConnectionError as e:
            raise UsageError(f"{where}: no answer after {self.config.retries} retries ({e}); is the server up at that "
                             f"base_url?") from None
        usage = response.usage
        row = {"key": key, "text": (response.choices[0].message.content or "").strip(),
               "prompt_tokens": usage.prompt_tokens if usage else 0,
               "answer_tokens": usage.completion_tokens if usage else 0}
        with self._lock:
            self.store.append([row])
            self._done[key] = row


FIXES = {400: "the endpoint cannot take this request (too many or too large images for it? lower --top-k, or "
              "check the server's image limits)",
         401: "check the key in the variable [explainer] api_key_env names",
         403: "the key has no access to this model; check [explainer] api_key_env and model",
         404: "check [explainer] model and base_url (the server lists its models at /models)",
         413: "the request is too large for the endpoint; lower --top-k"}
"""What to fix for each status the endpoint refuses a request with for good."""


def _message(error) -> str:
    """The endpoint's own message from an OpenAI-style error body, else the client's."""
    body = error.body if isinstance(error.body, dict) else {}
    detail = body.get("error", body) if isinstance(body.get("error", body), dict) else {}
    return str(detail.get("message") or error.message).splitlines()[0]


def data_url(image_HWC: np.ndarray) -> str:
    """A lossless PNG data URL of one uint8 image."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image_HWC)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_from_data_url(url: str) -> np.ndarray:
    """The uint8 RGB image a data URL holds (what a server receives)."""
    header, _, payload = url.partition(",")
    if not header.startswith("data:image/") or ";base64" not in header:
        raise ValueError(f"expected a base64 image data URL, got {header[:40]!r}")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


EXPLAINERS.register("openai")(EndpointExplainer)
