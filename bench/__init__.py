"""Benchmarks of celery-gcs against Celery's built-in ``gs://`` backend and its Redis backend.

``python -m bench`` (``make bench``) runs the same workloads against the
three backends, interleaved and repeated, in three passes, each on a fresh
stack: timed with no proxy in the path, counted through counting proxies
(one round), and timed production-like through proxies that hold each answer
as long as GCS or Firestore would in one region (workers ``-c 16``). It
writes ``bench/results/latest.json``, ``latest.md`` and ``latest.png``, and
README's section.

Modules: ``stack`` (emulators, brokers, proxies, workers), ``workloads``
(one measurement each), ``harness`` (rounds, interleaving, summary),
``counting`` (the proxies and what they bill), ``latency`` (the
production-like proxies and their model), ``pricing``, ``report``,
``chart`` (the chart, drawn with matplotlib), ``builtin`` (Celery's
``gs://`` backend, started on the emulators), ``tasks`` (the workers'
app; ``stack`` starts them with ``celery_gcs.local.worker``), ``cpu`` (CPU
time by process tree, with psutil).

``python -m bench --chords`` (``make bench-chords``) measures how celery-gcs
chords scale instead: ``chord_scaling`` (time per part at two sizes,
requests per part at four) and ``chord_report`` (``chord-scaling.{json,md}``).

``python -m bench.request_profile`` (``make bench-requests``) profiles the
client CPU of one GCS PUT, one GET and one Firestore commit, per variant of
the request path (``request-profile.{json,md}``).
"""
