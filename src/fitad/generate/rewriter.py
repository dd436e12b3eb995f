"""Optional LLM rewrite of a shop owner's request into a short English visual description (off by default).

Talks to any OpenAI-compatible ``/chat/completions`` endpoint (vLLM, Ollama, llama.cpp server, a hosted
API) with the standard library only. A rewrite is a nicety: every failure (refused, slow, non-200,
malformed answer) returns the original text with ``used=False`` and the reason, so generation goes on.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from fitad.generate.industries import resolve_industry

__all__ = ["RewriteResult", "rewrite_request", "SYSTEM_PROMPT"]

SYSTEM_PROMPT = (
    "You write prompts for an image generation model that makes advertising images for small businesses. "
    "Rewrite the user's request (often Korean) as one short English visual description of the image: "
    "subject, setting, mood, lighting, composition. At most 40 words, comma-separated phrases, no text or "
    "letters in the image, no quotes, no explanations. Reply with the description only."
)
_MAX_RESPONSE_BYTES = 1 << 20  # a chat completion for one short description is a few KB


@dataclasses.dataclass
class RewriteResult:
    """The text to use (the rewrite, or the original when ``used`` is False) and why."""

    text: str
    used: bool
    error: str | None
    seconds: float


def _check_endpoint(endpoint: str) -> str:
    if not isinstance(endpoint, str):
        raise ValueError(f"endpoint must be a string, got {type(endpoint).__name__}")
    parsed = urllib.parse.urlparse(endpoint.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"endpoint {endpoint!r} must be an http(s) URL such as http://127.0.0.1:8000/v1")
    return endpoint.strip().rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _content(payload: Any) -> str:
    """``choices[0].message.content`` of a chat completion, tidied to one line; ValueError if absent."""
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ValueError("the answer has no choices[0].message.content") from None
    if not isinstance(content, str):
        raise ValueError("choices[0].message.content is not a string")
    text = " ".join(content.split()).strip("\"'` ")
    if not text:
        raise ValueError("the answer's content is empty")
    return text


def rewrite_request(text: str, *, endpoint: str, model: str, api_key: str | None = None, timeout_s: float = 10.0,
                    industry: str | None = None) -> RewriteResult:
    """Ask the LLM at ``endpoint`` (e.g. ``http://127.0.0.1:8000/v1``) to rewrite ``text``; never raises on
    network or answer problems (only on bad arguments: endpoint, model, timeout, industry)."""
    start = time.monotonic()
    base = _check_endpoint(endpoint)
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a non-empty string, got {model!r}")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ValueError(f"timeout_s must be a number > 0, got {timeout_s!r}")
    ind = resolve_industry(industry) if industry else None
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")

    def fallback(error: str | None) -> RewriteResult:
        return RewriteResult(text=text, used=False, error=error, seconds=time.monotonic() - start)

    if not text.strip():
        return fallback(None)  # nothing to rewrite; not an error

    user = text if ind is None else f"Business: {ind.name_en} ({ind.name_ko}).\nRequest: {text}"
    body = json.dumps({
        "model": model,
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
        "temperature": 0.2,
        "max_tokens": 120,
        "stream": False,
    }).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    url = f"{base}/chat/completions"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    # A local server must not be sent through a proxy from the environment (it could not reach it).
    handlers = [urllib.request.ProxyHandler({})] if _is_loopback(urllib.parse.urlparse(url).hostname or "") else []
    opener = urllib.request.build_opener(*handlers)
    where = f"LLM rewriter at {base}"
    deadline = start + timeout_s
    try:
        with opener.open(request, timeout=timeout_s) as response:
            if response.status != 200:  # 201/204 ...: not a chat completion
                return fallback(f"{where}: HTTP {response.status}, expected 200")
            chunks: list[bytes] = []
            size = 0
            while True:  # read in chunks so a server that trickles bytes still ends at the deadline
                if time.monotonic() > deadline:
                    return fallback(f"{where}: no complete answer within {timeout_s:g} s")
                chunk = response.read(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > _MAX_RESPONSE_BYTES:
                    return fallback(f"{where}: answer larger than {_MAX_RESPONSE_BYTES} bytes")
                chunks.append(chunk)
        raw = b"".join(chunks)
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode("utf-8", "replace").strip() if exc.fp else ""
        return fallback(f"{where}: HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else ""))
    except (TimeoutError, socket.timeout):
        return fallback(f"{where}: no answer within {timeout_s:g} s")
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return fallback(f"{where}: no answer within {timeout_s:g} s")
        return fallback(f"{where}: cannot connect ({reason})")
    except (OSError, ValueError) as exc:  # connection reset, bad status line, ...
        return fallback(f"{where}: {type(exc).__name__}: {exc}")
    try:
        rewritten = _content(json.loads(raw.decode("utf-8")))
    except UnicodeDecodeError:
        return fallback(f"{where}: the answer is not UTF-8")
    except json.JSONDecodeError as exc:
        return fallback(f"{where}: the answer is not JSON ({exc.msg} at position {exc.pos})")
    except ValueError as exc:
        return fallback(f"{where}: {exc}")
    return RewriteResult(text=rewritten, used=True, error=None, seconds=time.monotonic() - start)
