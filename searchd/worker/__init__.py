"""The worker process (``python -m searchd.worker``, one per running job): planning through a
search strategy, evaluation, the local and Dask runners, the estimator allow-list, data.

This ``__init__`` imports nothing: the supervisor reads a few light modules from here."""
