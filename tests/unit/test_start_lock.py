"""Engines sharing a GPU start one at a time (the lock is real: flock on a file in /tmp)."""

from __future__ import annotations

import asyncio

from deployments.llm.start_lock import engine_start_lock, gpu_key


async def _hold(key: str, log: list[str], name: str) -> None:
    async with engine_start_lock(key):
        log.append(f"{name} in")
        await asyncio.sleep(0.2)
        log.append(f"{name} out")


def test_engines_on_one_gpu_start_one_at_a_time():
    log: list[str] = []

    async def both():
        await asyncio.gather(_hold("test-7", log, "a"), _hold("test-7", log, "b"))

    asyncio.run(both())
    assert log in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


def test_engines_on_different_gpus_start_together():
    log: list[str] = []

    async def both():
        await asyncio.gather(_hold("test-8", log, "a"), _hold("test-9", log, "b"))

    asyncio.run(both())
    assert log[:2] in (["a in", "b in"], ["b in", "a in"])


def test_gpu_key_outside_ray_reads_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert gpu_key() == "1-3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_key() == "default"
