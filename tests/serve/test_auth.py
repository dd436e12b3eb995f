"""API keys: hashed storage, tiers, 401/403, constant-time comparison over every key."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from fitad.config import ConfigError
from fitad.serve import auth
from fitad.serve.auth import KeyStore, Principal, hash_key, make_entry, new_key, require
from fitad.serve.config import ServeConfig
from fitad.serve.errors import ApiError


@pytest.fixture
def keys():
    return {"alice": new_key(), "bob": new_key(), "root": new_key()}


@pytest.fixture
def key_file(tmp_path, keys):
    tiers = {"alice": "free", "bob": "pro", "root": "admin"}
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump([{"name": n, "sha256": hash_key(k), "tier": tiers[n]} for n, k in keys.items()]),
                    encoding="utf-8")
    return path


def test_hash_and_new_key():
    assert hash_key("secret") == hashlib.sha256(b"secret").hexdigest()
    a, b = new_key(), new_key()
    assert a != b and len(a) >= 40 and all(c.isalnum() or c in "-_" for c in a)
    raw, entry = make_entry("shop-1", "pro")
    assert entry == {"name": "shop-1", "sha256": hash_key(raw), "tier": "pro"} and raw not in json.dumps(entry)


def test_auth_off_gives_anonymous_free_principals_per_caller():
    store = KeyStore.from_config(ServeConfig(), env={})
    assert not store.enabled
    p = store.authenticate(None, caller_id="203.0.113.7")
    assert p == Principal("203.0.113.7", "free", anonymous=True) and p.quota_id == "anon:203.0.113.7"
    assert store.authenticate("Bearer whatever", caller_id="198.51.100.1").name == "198.51.100.1"


def test_keys_from_a_yaml_file(key_file, keys):
    store = KeyStore.from_config(ServeConfig(api_keys_file=str(key_file)), env={})
    assert store.enabled and sorted(store.names) == ["alice", "bob", "root"]
    for name, tier in (("alice", "free"), ("bob", "pro"), ("root", "admin")):
        p = store.authenticate(f"Bearer {keys[name]}", caller_id="ip")
        assert (p.name, p.tier, p.anonymous, p.quota_id) == (name, tier, False, f"key:{name}")
    assert store.authenticate(f"bearer   {keys['bob']}  ").name == "bob"  # scheme is case-insensitive


def test_keys_from_json_file_and_env(tmp_path):
    raw1, raw2 = new_key(), new_key()
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [{"name": "j", "sha256": hash_key(raw1).upper(), "tier": "pro"}]}))
    env = {"FITAD_API_KEYS": f" e:admin:{hash_key(raw2)} , "}
    store = KeyStore.from_config(ServeConfig(api_keys_file=str(path)), env=env)
    assert store.authenticate(f"Bearer {raw1}").tier == "pro"
    assert store.authenticate(f"Bearer {raw2}").tier == "admin"
    assert KeyStore.from_config(ServeConfig(), env=env).enabled


@pytest.mark.parametrize("header", [None, "", "   ", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc",
                                    "Bearer two words", "Bearer \x00abc", "Bearer " + "a" * 600, "Bearer ümlaut",
                                    "Bearer wrong-key-entirely"])
def test_missing_garbled_or_unknown_keys_are_401(key_file, header):
    store = KeyStore.from_config(ServeConfig(api_keys_file=str(key_file)), env={})
    with pytest.raises(ApiError) as info:
        store.authenticate(header, caller_id="ip")
    err = info.value
    assert (err.status, err.code) == (401, "unauthorized")
    assert err.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_hash_itself_is_not_a_key(key_file, keys):
    store = KeyStore.from_config(ServeConfig(api_keys_file=str(key_file)), env={})
    with pytest.raises(ApiError):
        store.authenticate(f"Bearer {hash_key(keys['root'])}")


def test_tiers_403(key_file, keys):
    store = KeyStore.from_config(ServeConfig(api_keys_file=str(key_file)), env={})
    free, pro, admin = (store.authenticate(f"Bearer {keys[n]}") for n in ("alice", "bob", "root"))
    assert require(admin, "admin") is admin and require(admin, "pro") is admin and require(pro, "free") is pro
    for principal, tier in ((free, "pro"), (free, "admin"), (pro, "admin")):
        with pytest.raises(ApiError) as info:
            require(principal, tier)
        assert (info.value.status, info.value.code) == (403, "forbidden")
        assert tier in info.value.message and principal.name in info.value.message
    with pytest.raises(ApiError) as info:
        require(Principal("1.2.3.4", "free", anonymous=True), "admin")
    assert info.value.status == 403


@pytest.mark.parametrize("position", [0, 2, 4])
def test_every_key_is_compared_whichever_matches(monkeypatch, position):
    raws = [new_key() for _ in range(5)]
    store = KeyStore([auth.KeyEntry(f"k{i}", hash_key(r), "pro") for i, r in enumerate(raws)])
    calls = []
    real = auth.hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    assert store.authenticate(f"Bearer {raws[position]}").name == f"k{position}"
    assert len(calls) == 5                                    # no early exit on the match
    assert {a for a, _ in calls} == {bytes.fromhex(hash_key(r)) for r in raws}
    assert all(b == hashlib.sha256(raws[position].encode()).digest() for _, b in calls)  # hashes, not raw keys
    calls.clear()
    with pytest.raises(ApiError):
        store.authenticate(f"Bearer {new_key()}")
    assert len(calls) == 5


def test_configured_but_empty_or_missing_key_file_fails_closed(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("[]\n")
    store = KeyStore.from_config(ServeConfig(api_keys_file=str(empty)), env={})
    assert store.enabled
    with pytest.raises(ApiError):
        store.authenticate("Bearer " + new_key())
    with pytest.raises(ConfigError, match="cannot read"):
        KeyStore.from_config(ServeConfig(api_keys_file=str(tmp_path / "nope.yaml")), env={})


@pytest.mark.parametrize("content,match", [
    ("- {name: a, key: abc, tier: pro}\n", "never the key itself"),
    ("- {name: a, sha256: abc, tier: pro}\n", "64 hex digits"),
    (f"- {{name: a, sha256: {'a' * 64}, tier: gold}}\n", "tier 'gold'"),
    (f"- {{name: a, sha256: {'a' * 64}, tier: pro}}\n- {{name: b, sha256: {'a' * 64}, tier: pro}}\n", "same hash"),
    ("name: a\n", "expected a list"),
    ("- [unclosed\n", "not valid YAML"),
])
def test_bad_key_files_are_config_errors(tmp_path, content, match):
    path = tmp_path / "keys.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        KeyStore.from_config(ServeConfig(api_keys_file=str(path)), env={})


def test_bad_env_keys_are_config_errors():
    with pytest.raises(ConfigError, match="FITAD_API_KEYS"):
        KeyStore.from_config(ServeConfig(), env={"FITAD_API_KEYS": "justaname"})
