"""Run a callable in several threads at once, each with its own database connection."""

import threading

from django.db import connection


def run_concurrently(fn, copies: int = 2) -> list:
    """Start ``copies`` threads released together by a barrier; return their results."""
    barrier = threading.Barrier(copies)
    results = []

    def call():
        try:
            barrier.wait()
            results.append(fn())
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
