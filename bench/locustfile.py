"""Locust load for the search API: query-by-upload with catalogue photos (used by bench_api.py)."""

from __future__ import annotations

import os
import random
from pathlib import Path

from locust import HttpUser, constant_throughput, task

PHOTOS = [Path(p).read_bytes() for p in os.environ["LOOKALIKE_BENCH_PHOTOS"].split(os.pathsep)]
RATE_PER_USER = float(os.environ.get("LOOKALIKE_BENCH_RATE_PER_USER", "1"))


class Shopper(HttpUser):
    wait_time = constant_throughput(RATE_PER_USER)

    @task
    def search_by_upload(self) -> None:
        photo = random.choice(PHOTOS)
        with self.client.post(
            "/api/search", files={"image": ("q.jpg", photo, "image/jpeg")}, data={"k": "10"}, catch_response=True
        ) as response:
            if response.status_code != 200 or not response.json().get("results"):
                response.failure(f"HTTP {response.status_code}")
