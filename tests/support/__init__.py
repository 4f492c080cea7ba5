"""What the suites share: fakes of the services, the apps workers run, and their helpers."""
