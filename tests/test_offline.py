"""The suite runs offline: the hub is switched off and any outbound connection fails loudly."""

from __future__ import annotations

import os
import socket

import pytest


def test_hub_is_offline():
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_outbound_connection_is_refused():
    with pytest.raises(RuntimeError, match="must not reach the network"):
        socket.create_connection(("198.51.100.7", 443), timeout=1)


def test_loading_a_hub_model_id_fails_without_network():
    from diffusers import StableDiffusionPipeline

    with pytest.raises(Exception) as info:
        StableDiffusionPipeline.from_pretrained("stablediffusionapi/anything-v5")
    assert "offline" in str(info.value).lower() or "cannot find" in str(info.value).lower() \
        or "connect" in str(info.value).lower()
