"""Shared test fixtures: free ports and the shipped plan."""

from __future__ import annotations

import socket

import pytest

from canary_guard.plan import load_plan


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def plan():
    return load_plan()
