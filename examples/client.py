"""Render one product ad and one person ad through the Fit-AD ad service over HTTP (standard library only).

Start the service first (``fitad serve``), then::

    python examples/client.py --url http://127.0.0.1:3000 --key YOUR_KEY --out outputs/client
    python examples/client.py --product mug.jpg --person me.jpg --format instagram_story --headline "SALE"

Each ad is sent as ``multipart/form-data`` (the photo as ``image``, the other fields in one ``request`` JSON
field) to ``POST /ad/product`` and ``POST /ad/person``; the PNG is written to ``OUT/product.png`` and
``OUT/person.png`` with the ``X-Fitad-Meta`` metadata beside it as ``.json``. Without ``--product`` /
``--person``, scikit-image's coffee cup and astronaut photos are used (``pip install scikit-image``).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path


class ClientError(Exception):
    """A one-line reason the ad could not be made."""


def sample_photo(name: str) -> tuple[str, bytes]:
    """scikit-image's ``coffee`` or ``astronaut`` photo as PNG bytes (needs scikit-image and Pillow)."""
    try:
        from PIL import Image
        from skimage import data
    except ImportError as exc:
        raise ClientError(f"no photo given and the sample photos need scikit-image and Pillow ({exc.name} is "
                          f"missing): pass --product / --person PATH") from None
    buffer = io.BytesIO()
    Image.fromarray(getattr(data, name)()).save(buffer, format="PNG")
    return f"{name}.png", buffer.getvalue()


def read_photo(path: str | None, sample: str) -> tuple[str, bytes]:
    if path is None:
        return sample_photo(sample)
    try:
        return Path(path).name, Path(path).read_bytes()
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from None


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body and its content type."""
    boundary = f"fitad-{uuid.uuid4().hex}"
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n".encode())
        out.write(value.encode("utf-8") + b"\r\n")
    for name, (filename, data) in files.items():
        kind = "image/jpeg" if filename.lower().endswith((".jpg", ".jpeg")) else "image/png"
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                  f"Content-Type: {kind}\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def error_line(status: int, body: bytes) -> str:
    """``HTTP 422 invalid_field (image): no face found ...`` from the service's JSON error body."""
    try:
        error = json.loads(body)["error"]
        field = f" ({error['field']})" if error.get("field") else ""
        return f"HTTP {status} {error.get('code', '')}{field}: {error.get('message', '')}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}: {body[:200].decode('utf-8', 'replace').strip()}"


def make_ad(url: str, key: str | None, mode: str, photo: tuple[str, bytes], request: dict,
            timeout: float) -> tuple[bytes, dict]:
    """POST one ad; the PNG bytes and the metadata. Raises ClientError with a one-line reason."""
    body, content_type = multipart({"request": json.dumps(request, ensure_ascii=False)}, {"image": photo})
    headers = {"Content-Type": content_type, "Accept": "image/png"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(f"{url.rstrip('/')}/ad/{mode}", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            png, meta = r.read(), r.headers.get("X-Fitad-Meta")
    except urllib.error.HTTPError as exc:
        raise ClientError(f"{mode} ad refused: {error_line(exc.code, exc.read())}") from None
    except urllib.error.URLError as exc:
        raise ClientError(f"the service at {url} is not reachable ({exc.reason}): start it with `fitad serve`"
                          ) from None
    except (TimeoutError, OSError) as exc:
        raise ClientError(f"the service at {url} did not answer in time ({exc})") from None
    if not png.startswith(b"\x89PNG"):
        raise ClientError(f"{mode} ad: the service did not send a PNG")
    return png, json.loads(meta) if meta else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="the ad service")
    parser.add_argument("--key", default=None, help="API key (sent as Authorization: Bearer KEY)")
    parser.add_argument("--out", default="outputs/client", help="folder for the PNGs and their metadata")
    parser.add_argument("--product", default=None, help="product photo (default: scikit-image's coffee cup)")
    parser.add_argument("--person", default=None, help="person photo (default: scikit-image's astronaut)")
    parser.add_argument("--format", default="instagram_square", help="ad format, e.g. instagram_story, 1080x1350")
    parser.add_argument("--industry", default="cafe", help="industry of the product ad")
    parser.add_argument("--person-industry", default="beauty_salon", help="industry of the person ad")
    parser.add_argument("--headline", default="NEW", help="headline written on both ads")
    parser.add_argument("--lang", default="en", help="language of the copy (en, ko)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the service's)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each ad")
    args = parser.parse_args(argv)

    out = Path(args.out)
    jobs = (("product", args.product, "coffee", args.industry), ("person", args.person, "astronaut",
                                                                  args.person_industry))
    try:
        for mode, path, sample, industry in jobs:
            request = {"format": args.format, "industry": industry, "headline": args.headline,
                       "lang": args.lang, "seed": args.seed}
            if args.steps is not None:
                request["steps"] = args.steps
            png, meta = make_ad(args.url, args.key, mode, read_photo(path, sample), request, args.timeout)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{mode}.png").write_bytes(png)
            (out / f"{mode}.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
            size = meta.get("size")
            size = "x".join(map(str, size)) if isinstance(size, (list, tuple)) else size or "?"
            lora = meta.get("lora") or {}
            print(f"{mode}: wrote {out / f'{mode}.png'} ({size}, seed {meta.get('seed')}, LoRA "
                  f"{lora.get('name', '-')}/{lora.get('version', '-')}) and {out / f'{mode}.json'}")
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
