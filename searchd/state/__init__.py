"""What the two processes share on disk: atomic files, signing, checkpoints, results, job
records, control files, and the read API (``load_results``)."""
