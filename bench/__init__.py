"""Benchmarks of celery-gcs against Celery's built-in ``gs://`` backend and its Redis backend.

``python -m bench`` (``make bench``) starts the local stack, runs the same
workloads against the three backends, interleaved and repeated, counts the
requests each makes through counting proxies, and writes
``bench/results/latest.json``, ``latest.md`` and ``latest.png``.

Modules: ``stack`` (emulators, brokers, proxies, workers), ``workloads``
(one measurement each), ``harness`` (rounds, interleaving, summary),
``counting`` (the proxies and what they bill), ``pricing``, ``report``,
``chart`` (the chart, drawn with matplotlib), ``builtin`` (Celery's
``gs://`` backend, started on the emulators), ``tasks`` (the workers'
app; ``stack`` starts them with ``celery_gcs.local.worker``), ``cpu`` (CPU
time by process tree, with psutil).

``python -m bench --chords`` (``make bench-chords``) measures how celery-gcs
chords scale instead: ``chord_scaling`` (time per part at two sizes,
requests per part at four) and ``chord_report`` (``chord-scaling.{json,md}``).
"""
