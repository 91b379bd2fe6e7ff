"""The systemd files of systemd/, shipped inside the package for ``searchd service install``.

systemd/ in the repository is the source; tests/test_service_install.py checks that these
copies are identical (after an edit there: ``cp systemd/<file> searchd/service_files/``).
"""
