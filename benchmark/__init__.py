"""The musicbench harness: data, cache, retrieval, evaluation, tracking, CLI."""
