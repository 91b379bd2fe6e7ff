"""The supervisor process (``searchd run``): the daemon loop, job intake, the worker handle,
the idle gate, process control and sd_notify. It never imports scikit-learn."""
