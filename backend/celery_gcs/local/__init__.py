"""The local stack: emulators, Redis, a counting and fault-injecting proxy, and real workers.

Behind ``celery-gcs dev``, ``celery-gcs demo``, the tests and the benchmarks;
needs the ``local`` extra (``pip install './celery-gcs[local]'`` from a checkout).
"""
