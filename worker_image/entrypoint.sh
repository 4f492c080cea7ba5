#!/bin/sh
# The worker container's entrypoint; tini (PID 1) runs it.
#
#   worker [ARG...]   check the environment (celery_gcs.worker.env), then run the Celery
#                     worker it describes, with ARG... appended (e.g. --without-gossip)
#   anything else     run as given: celery inspect ..., python, sh
#
# Either way the last step is exec: the command replaces this shell, so the SIGTERM
# that Kubernetes sends to tini, and tini forwards to its child, reaches Celery's main
# process, which starts a warm shutdown (running tasks finish, nothing new is taken).
set -eu

[ "$#" -gt 0 ] || set -- worker

if [ "$1" = worker ]; then
    shift
    # On success: `export CELERY_RESULT_BACKEND=...` and `set -- celery ... "$@"`, every
    # value shell-quoted. On a bad environment: each problem, naming its variable, on
    # stderr, and exit status 78.
    commands=$(python -m celery_gcs.worker.env) || exit
    eval "$commands"
fi

exec "$@"
