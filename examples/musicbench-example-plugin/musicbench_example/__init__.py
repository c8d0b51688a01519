"""An example musicbench plug-in: ``example-bands`` (encoder) and ``example_loudness`` (pair metric).

Nothing here is imported by musicbench until the encoder or metric is used (or listed in detail): the entry points
in pyproject.toml are all musicbench reads to know they exist.
"""
